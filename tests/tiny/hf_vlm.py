"""Tiny, randomly initialised image-text-to-text models of real architectures, for tests.

Each builder writes a directory that ``AutoModelForImageTextToText`` and the family's processor
load like a Hub checkpoint: config and weights, a BPE tokenizer trained on the spot and wrapped
in the family's tokenizer class, the family's image processor configured small, and a chat template.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from descry.bench.builders import name_processor
from descry.bench.configs import QWEN_TEMPLATE

CORPUS = [
    "A photo of a red car parked on a quiet street.",
    "Describe this image in one sentence.",
    "Describe this image in detail: the subjects, setting, colours, actions and any visible text.",
    "What is in the picture? A dog runs across the green grass.",
    "Two people walk along the beach at sunset, the sky is orange and blue.",
    "A cat sleeps on a wooden table next to a cup of coffee.",
    "Write a short caption. List the objects you can see.",
    "The quick brown fox jumps over the lazy dog 0123456789.",
]

IDEFICS3_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}:"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
)

LLAVA_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] | upper }}: "
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>\n{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %} {% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def _train_bpe(specials: list[str], style: str, vocab_size: int = 420) -> tuple[dict[str, int], list[Any]]:
    """Train a small BPE on CORPUS; ``style`` is 'bytelevel' (GPT-2/Qwen) or 'metaspace' (Llama)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    if style == "bytelevel":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    else:
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁")
        alphabet = sorted(set("".join(CORPUS)) | set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ:\n"))
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=alphabet, show_progress=False
    )
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return dict(model["vocab"]), merges


def _save(model: Any, processor: Any, path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def _seeded() -> None:
    import torch

    torch.manual_seed(0)


# ---------------------------------------------------------------- Qwen2.5-VL

QWEN_SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]


def build_tiny_qwen2_5_vl(path: Path) -> Path:
    """A 2-layer Qwen2.5-VL (vision depth 2) whose processor resizes images to at most 112x112."""
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2Tokenizer,
        Qwen2VLImageProcessor,
    )

    from descry.backends.hf_processors import image_only_processor_class

    vocab, merges = _train_bpe(QWEN_SPECIALS, "bytelevel")
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        extra_special_tokens=QWEN_SPECIALS[1:],
    )
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}
    image_processor = Qwen2VLImageProcessor(
        min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16, patch_size=14, temporal_patch_size=2, merge_size=2
    )
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 1024,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 56,
            "out_hidden_size": 64,
            "fullatt_block_indexes": [1],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    from tests.tiny.vlm_kit import scaled

    _seeded()
    model = scaled(Qwen2_5_VLForConditionalGeneration(config))
    model.generation_config.eos_token_id = [ids["<|im_end|>"], ids["<|endoftext|>"]]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.generation_config.repetition_penalty = 1.05  # as Qwen2.5-VL ships it
    processor_cls = image_only_processor_class("qwen2_5_vl")
    processor = processor_cls(image_processor, tokenizer, chat_template=QWEN_TEMPLATE)
    _save(model, processor, path)
    name_processor(path, "Qwen2_5_VLProcessor")
    video = {"fps": 2.0, "merge_size": 2, "patch_size": 14, "video_processor_type": "Qwen2VLVideoProcessor"}
    (path / "video_preprocessor_config.json").write_text(json.dumps(video, indent=2))
    return path


# ---------------------------------------------------------------- Idefics3 / SmolVLM

IDEFICS3_SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<end_of_utterance>",
    "<fake_token_around_image>",
    "<image>",
    "<global-img>",
    *[f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)],
]


def build_tiny_idefics3(path: Path) -> Path:
    """A 2-layer Idefics3 (SmolVLM architecture): 32 px tiles, 4 image tokens per tile, up to 2x2 tiles."""
    from transformers import (
        GPT2Tokenizer,
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessor,
        Idefics3Processor,
    )

    vocab, merges = _train_bpe(IDEFICS3_SPECIALS, "bytelevel")
    tokenizer = GPT2Tokenizer(
        vocab=vocab,
        merges=merges,
        bos_token="<|im_start|>",
        eos_token="<end_of_utterance>",
        unk_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        add_prefix_space=False,
        extra_special_tokens=IDEFICS3_SPECIALS[1:],
    )
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in IDEFICS3_SPECIALS[:5]}
    tile, patch, scale = 32, 8, 2
    image_seq_len = (tile // patch) ** 2 // scale**2
    image_processor = Idefics3ImageProcessor(
        size={"longest_edge": 2 * tile}, max_image_size={"longest_edge": tile}, do_image_splitting=True
    )
    config = Idefics3Config(
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": tile,
            "patch_size": patch,
        },
        text_config={
            "model_type": "llama",
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 1024,
            "bos_token_id": ids["<|im_start|>"],
            "eos_token_id": ids["<end_of_utterance>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        image_token_id=ids["<image>"],
        scale_factor=scale,
        pad_token_id=ids["<|endoftext|>"],
    )
    from tests.tiny.vlm_kit import scaled

    _seeded()
    model = scaled(Idefics3ForConditionalGeneration(config))
    model.generation_config.eos_token_id = ids["<end_of_utterance>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    processor = Idefics3Processor(
        image_processor, tokenizer, image_seq_len=image_seq_len, chat_template=IDEFICS3_TEMPLATE
    )
    return _save(model, processor, path)


# ---------------------------------------------------------------- LLaVA 1.5

LLAVA_SPECIALS = ["<unk>", "<s>", "</s>", "<image>", "<pad>"]


def build_tiny_llava(path: Path) -> Path:
    """A 2-layer LLaVA with a CLIP vision tower on 32 px images: 16 image tokens per image."""
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlamaTokenizer,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    vocab, merges = _train_bpe(LLAVA_SPECIALS, "metaspace")
    tokenizer = LlamaTokenizer(
        vocab=vocab,
        merges=merges,
        pad_token="<pad>",
        extra_special_tokens=["<image>"],
        add_prefix_space=True,
        add_bos_token=True,
    )
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in LLAVA_SPECIALS}
    size, patch = 32, 8
    image_processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=size,
        patch_size=patch,
        projection_dim=32,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=ids["<s>"],
        eos_token_id=ids["</s>"],
        pad_token_id=ids["<pad>"],
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=ids["<image>"],
        image_seq_length=(size // patch) ** 2,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
    )
    from tests.tiny.vlm_kit import scaled

    _seeded()
    model = scaled(LlavaForConditionalGeneration(config))
    model.generation_config.eos_token_id = ids["</s>"]
    model.generation_config.pad_token_id = ids["<pad>"]
    processor = LlavaProcessor(
        image_processor,
        tokenizer,
        patch_size=patch,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=LLAVA_TEMPLATE,
    )
    return _save(model, processor, path)
