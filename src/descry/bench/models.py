"""Architecture-exact, randomly initialised models for the benchmark, written like Hub checkpoints.

The sizes are the published configs (written down here as facts, nothing is downloaded):
BLIP-base is ``Salesforce/blip-image-captioning-base``, Qwen2.5-VL-7B is ``Qwen/Qwen2.5-VL-7B-Instruct``,
Phi-3.5-vision is ``microsoft/Phi-3.5-vision-instruct``. Weights are random, tokenizers are trained on
the spot and padded with filler tokens to the real vocabulary size, so every id a random model emits
decodes. Timings mean what they would with the real weights once the output length is fixed.
The ``tiny`` scale keeps each architecture but shrinks it, for the smoke test.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from descry.errors import ConfigError

Scale = Literal["full", "tiny"]

CORPUS = [
    "a photography of a dog running on the beach next to the sea",
    "a picture of a red car parked in the street in front of a house",
    "two cats sleeping on a couch next to a window in the afternoon",
    "a man riding a bicycle down a city road with tall buildings",
    "an aerial view of a green field with trees, a river and a small town",
    "Describe this image in one sentence.",
    "Describe this image in detail: the subjects, setting, colours, actions and any visible text.",
    "The quick brown fox jumps over the lazy dog 0123456789.",
]

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

QWEN_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@dataclass(frozen=True)
class BuiltModel:
    """A model directory the benchmark loads, and what it is."""

    key: str
    label: str
    path: Path
    backend: str
    parameters: int
    input_pixels: int
    trust_remote_code: bool = False


# ---------------------------------------------------------------- published sizes

BLIP_BASE = {
    "vision": {
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "image_size": 384,
        "patch_size": 16,
        "layer_norm_eps": 1e-5,
    },
    "text": {
        "vocab_size": 30524,
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "encoder_hidden_size": 768,
        "max_position_embeddings": 512,
    },
    "projection_dim": 512,
}
BLIP_TINY = {
    "vision": {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "image_size": 32,
        "patch_size": 8,
        "layer_norm_eps": 1e-5,
    },
    "text": {
        "vocab_size": 30524,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "encoder_hidden_size": 32,
        "max_position_embeddings": 128,
    },
    "projection_dim": 32,
}

QWEN25_VL_7B = {
    "text": {
        "vocab_size": 152064,
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "max_position_embeddings": 128000,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": False,
        "sliding_window": 32768,
        "max_window_layers": 28,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
    },
    "vision": {
        "depth": 32,
        "hidden_size": 1280,
        "intermediate_size": 3420,
        "num_heads": 16,
        "out_hidden_size": 3584,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "window_size": 112,
        "fullatt_block_indexes": [7, 15, 23, 31],
        "tokens_per_second": 2,
        "hidden_act": "silu",
    },
}
QWEN25_VL_TINY = {
    "text": {
        "vocab_size": 152064,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": False,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]},
    },
    "vision": {
        "depth": 2,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_heads": 2,
        "out_hidden_size": 64,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "window_size": 56,
        "fullatt_block_indexes": [1],
        "hidden_act": "silu",
    },
}
# Qwen2 vocabulary: 151643 regular tokens, then these specials from id 151643 on
QWEN_SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
QWEN_REGULAR = 151643

PHI35_VISION = {
    "lm": {
        "vocab_size": 32064,
        "hidden_size": 3072,
        "intermediate_size": 8192,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "max_position_embeddings": 131072,
        "original_max_position_embeddings": 4096,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "sliding_window": 262144,
    },
    # openai/clip-vit-large-patch14-336
    "clip": {
        "hidden_size": 1024,
        "intermediate_size": 4096,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "image_size": 336,
        "patch_size": 14,
        "projection_dim": 768,
        "hidden_act": "quick_gelu",
    },
    "num_img_tokens": 144,
}
PHI35_TINY = {
    "lm": {
        "vocab_size": 32064,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "max_position_embeddings": 4096,
        "original_max_position_embeddings": 4096,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "sliding_window": 262144,
    },
    "clip": {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": 28,
        "patch_size": 7,
        "projection_dim": 32,
        "hidden_act": "quick_gelu",
    },
    "num_img_tokens": 4,
}
# Phi-3 (Llama) vocabulary: 32000 regular tokens (<unk>, <s>, </s> first), then the chat specials
PHI_SPECIALS = {
    "<|endoftext|>": 32000,
    "<|assistant|>": 32001,
    "<|system|>": 32006,
    "<|end|>": 32007,
    "<|user|>": 32010,
}
PHI_REMOTE_FILES = [
    "configuration_phi3_v.py",
    "modeling_phi3_v.py",
    "image_embedding_phi3_v.py",
    "image_processing_phi3_v.py",
    "processing_phi3_v.py",
]

MODELS = ("blip-base", "qwen2.5-vl-7b", "phi-3.5-vision")


# ---------------------------------------------------------------- tokenizers


def _trained_bpe(byte_level: bool) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A small BPE vocabulary and its merges, trained on CORPUS."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    if byte_level:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    else:
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁")
        alphabet = sorted(set("".join(CORPUS)) | set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    trainer = trainers.BpeTrainer(vocab_size=600, initial_alphabet=alphabet, show_progress=False)
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return dict(model["vocab"]), merges  # type: ignore[return-value]


def padded_vocab(base: dict[str, int], size: int, start: int = 0) -> dict[str, int]:
    """``base`` renumbered from ``start``, then filler tokens up to ``size`` entries in all."""
    vocab = {tok: start + i for i, tok in enumerate(sorted(base, key=base.__getitem__))}
    index = start + len(vocab)
    while index < size:
        vocab[f"fill{index}"] = index
        index += 1
    return vocab


def blip_tokenizer() -> Any:
    """BERT WordPiece vocabulary of bert-base-uncased's size (30522) with BLIP's [DEC] and [ENC]."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import BertTokenizer

    raw = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    raw.normalizer = normalizers.BertNormalizer(lowercase=True)
    raw.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    raw.train_from_iterator(CORPUS * 4, trainers.WordPieceTrainer(vocab_size=600, show_progress=False))
    vocab = {"[PAD]": 0, **{f"[unused{i}]": i + 1 for i in range(99)}}
    vocab.update({"[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103})
    learned = {t: i for t, i in raw.get_vocab().items() if t not in vocab}
    vocab.update(padded_vocab(learned, 30522, start=104))
    return BertTokenizer(vocab=vocab, bos_token="[DEC]", extra_special_tokens=["[ENC]"])


def qwen_tokenizer() -> Any:
    """A byte-level BPE with Qwen2's 151643 regular tokens and its specials at their real ids."""
    from transformers import Qwen2Tokenizer

    base, merges = _trained_bpe(byte_level=True)
    vocab = padded_vocab(base, QWEN_REGULAR)
    vocab.update({tok: QWEN_REGULAR + i for i, tok in enumerate(QWEN_SPECIALS)})
    return Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,  # type: ignore[arg-type]
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,  # type: ignore[arg-type]
        extra_special_tokens=QWEN_SPECIALS[1:],
    )


def phi_tokenizer() -> Any:
    """A BPE with Phi-3's 32000 regular tokens and its chat specials at their real ids."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    base, merges = _trained_bpe(byte_level=True)
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    vocab.update(padded_vocab({t: i for t, i in base.items() if t not in vocab}, 32000, start=3))
    vocab.update(PHI_SPECIALS)
    raw = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token="<s>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        unk_token="<unk>",
        padding_side="left",
        extra_special_tokens=list(PHI_SPECIALS)[1:],
    )


# ---------------------------------------------------------------- model construction


def _random_model(cls: Any, config: Any, device: str, dtype: Any) -> Any:
    """A randomly initialised model built straight on ``device`` in ``dtype``."""
    import torch

    torch.manual_seed(0)
    with torch.device(device):
        model = cls._from_config(config, dtype=dtype)
    return model.eval()


def _count(model: Any) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def build_blip(path: Path, scale: Scale, device: str, dtype: Any) -> BuiltModel:
    """BLIP-base captioning (ViT-B/16 at 384 px, BERT-base decoder with cross-attention)."""
    from transformers import BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    sizes = BLIP_BASE if scale == "full" else BLIP_TINY
    tokenizer = blip_tokenizer()
    side = sizes["vision"]["image_size"]  # type: ignore[index]
    image_processor = BlipImageProcessor(
        size={"height": side, "width": side}, image_mean=CLIP_MEAN, image_std=CLIP_STD, resample=3
    )
    processor = BlipProcessor(image_processor=image_processor, tokenizer=tokenizer)
    text = {
        **sizes["text"],  # type: ignore[dict-item]
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.sep_token_id,
        "sep_token_id": tokenizer.sep_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    config = BlipConfig(
        text_config=text, vision_config=sizes["vision"], projection_dim=sizes["projection_dim"]  # type: ignore[arg-type]
    )
    model = _random_model(BlipForConditionalGeneration, config, device, dtype)
    _save(path, model, processor)
    return BuiltModel(
        "blip-base",
        "BLIP-base (Salesforce/blip-image-captioning-base)",
        path,
        "blip",
        _count(model),
        side * side,
    )


def build_qwen2_5_vl(path: Path, scale: Scale, device: str, dtype: Any) -> BuiltModel:
    """Qwen2.5-VL-7B-Instruct: 28-layer 3584-wide decoder (GQA 28/4), 32-block windowed ViT."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2VLImageProcessor

    from descry.backends.hf_vlm import image_only_processor_class

    sizes = QWEN25_VL_7B if scale == "full" else QWEN25_VL_TINY
    tokenizer = qwen_tokenizer()
    ids = {t: QWEN_REGULAR + i for i, t in enumerate(QWEN_SPECIALS)}
    text = {
        **sizes["text"],
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }
    config = Qwen2_5_VLConfig(
        text_config=text,
        vision_config=sizes["vision"],
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    max_pixels = 12845056 if scale == "full" else 28 * 28 * 16
    image_processor = Qwen2VLImageProcessor(
        min_pixels=3136,
        max_pixels=max_pixels,
        patch_size=14,
        temporal_patch_size=2,
        merge_size=2,
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
    )
    model = _random_model(Qwen2_5_VLForConditionalGeneration, config, device, dtype)
    model.generation_config.eos_token_id = [ids["<|im_end|>"], ids["<|endoftext|>"]]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    processor = image_only_processor_class("qwen2_5_vl")(
        image_processor, tokenizer, chat_template=QWEN_TEMPLATE
    )
    _save(path, model, processor)
    name_processor(path, "Qwen2_5_VLProcessor")
    return BuiltModel("qwen2.5-vl-7b", "Qwen2.5-VL-7B-Instruct", path, "hf_vlm", _count(model), max_pixels)


def phi3v_remote_code(search: list[Path]) -> Path:
    """The folder holding the Phi-3-V remote code (descry's re-implementation in tests/tiny/phi3v_remote)."""
    for folder in search:
        if all((folder / name).is_file() for name in PHI_REMOTE_FILES):
            return folder
    raise ConfigError(
        "the Phi-3.5-vision benchmark needs the model's remote code files, which were not found in "
        + ", ".join(str(f) for f in search),
        hint="run the benchmark from a descry checkout (tests/tiny/phi3v_remote), or pass --phi3v-code DIR",
    )


def build_phi3v(path: Path, scale: Scale, device: str, dtype: Any, remote_code: Path) -> BuiltModel:
    """Phi-3.5-vision-instruct: Phi-3-mini decoder (32 x 3072) with the HD CLIP ViT-L/14-336 embedding."""
    from safetensors.torch import save_file

    sizes = PHI35_VISION if scale == "full" else PHI35_TINY
    path.mkdir(parents=True, exist_ok=True)
    for name in PHI_REMOTE_FILES:
        shutil.copyfile(remote_code / name, path / name)
    tokenizer = phi_tokenizer()
    tokenizer.save_pretrained(path)
    config = _phi_config(sizes)
    (path / "config.json").write_text(json.dumps(config, indent=2))
    crop = sizes["clip"]["image_size"]  # type: ignore[index]
    preprocessor = {
        "auto_map": {
            "AutoImageProcessor": "image_processing_phi3_v.Phi3VImageProcessor",
            "AutoProcessor": "processing_phi3_v.Phi3VProcessor",
        },
        "image_processor_type": "Phi3VImageProcessor",
        "processor_class": "Phi3VProcessor",
        "num_crops": 4,
        "crop_size": crop,
        "num_img_tokens": sizes["num_img_tokens"],
        "image_mean": CLIP_MEAN,
        "image_std": CLIP_STD,
        "do_convert_rgb": True,
    }
    (path / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2))
    generation = {"bos_token_id": 1, "eos_token_id": config["eos_token_id"], "pad_token_id": 32000}
    (path / "generation_config.json").write_text(json.dumps(generation, indent=2))
    state = _phi_weights(config, sizes, device, dtype)
    count = sum(int(v.numel()) for v in state.values())
    save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})
    return BuiltModel(
        "phi-3.5-vision", "Phi-3.5-vision-instruct", path, "phi3v", count, 4 * crop * crop, True
    )


def _phi_config(sizes: dict[str, Any]) -> dict[str, Any]:
    clip = sizes["clip"]
    return {
        "architectures": ["Phi3VForCausalLM"],
        "auto_map": {
            "AutoConfig": "configuration_phi3_v.Phi3VConfig",
            "AutoModelForCausalLM": "modeling_phi3_v.Phi3VForCausalLM",
        },
        "model_type": "phi3_v",
        "_attn_implementation": "flash_attention_2",
        **sizes["lm"],
        "bos_token_id": 1,
        "eos_token_id": [PHI_SPECIALS["<|end|>"], PHI_SPECIALS["<|endoftext|>"]],
        "pad_token_id": 32000,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "embd_layer": {
            "embedding_cls": "image",
            "hd_transform_order": "sub_glb",
            "projection_cls": "mlp",
            "use_hd_transform": True,
            "with_learnable_separator": True,
        },
        "img_processor": {
            "name": "clip_vision_model",
            "model_name": "openai/clip-vit-large-patch14-336",
            "image_dim_out": clip["hidden_size"],
            "num_img_tokens": sizes["num_img_tokens"],
            "clip_config": clip,
        },
    }


def _phi_weights(config: dict[str, Any], sizes: dict[str, Any], device: str, dtype: Any) -> dict[str, Any]:
    """Random weights under the remote model's parameter names, from transformers' native modules."""
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModel, Phi3Config, Phi3ForCausalLM

    keys = (
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "pad_token_id",
        "bos_token_id",
    )
    lm_config = Phi3Config(**{k: config[k] for k in keys})
    state = {
        k: v.cpu() for k, v in _random_model(Phi3ForCausalLM, lm_config, device, dtype).state_dict().items()
    }
    vision = _random_model(CLIPVisionModel, CLIPVisionConfig(**sizes["clip"]), device, dtype)
    prefix = "model.vision_embed_tokens."
    state.update({prefix + "img_processor." + k: v.cpu() for k, v in vision.state_dict().items()})
    merged, hidden = 4 * sizes["clip"]["hidden_size"], sizes["lm"]["hidden_size"]
    extra = {
        "glb_GN": torch.randn(1, 1, merged) * 0.02,
        "sub_GN": torch.randn(1, 1, 1, merged) * 0.02,
        "img_projection.0.weight": torch.randn(hidden, merged) * 0.02,
        "img_projection.0.bias": torch.zeros(hidden),
        "img_projection.2.weight": torch.randn(hidden, hidden) * 0.02,
        "img_projection.2.bias": torch.zeros(hidden),
    }
    state.update({prefix + k: v.to(dtype) for k, v in extra.items()})
    return {k: v.contiguous() for k, v in state.items() if "rotary_emb" not in k and "position_ids" not in k}


def _save(path: Path, model: Any, processor: Any) -> None:
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    processor.save_pretrained(path)


def name_processor(path: Path, name: str) -> None:
    """Record the stock processor class, as a Hub checkpoint does."""
    for file in ("processor_config.json", "tokenizer_config.json", "preprocessor_config.json"):
        target = path / file
        if target.is_file():
            data = json.loads(target.read_text())
            if "processor_class" in data:
                data["processor_class"] = name
                target.write_text(json.dumps(data, indent=2))


def build(
    key: str, path: Path, *, scale: Scale, device: str, dtype: Any, remote_code: list[Path] | None = None
) -> BuiltModel:
    """Build one of MODELS into ``path``."""
    if key == "blip-base":
        return build_blip(path, scale, device, dtype)
    if key == "qwen2.5-vl-7b":
        return build_qwen2_5_vl(path, scale, device, dtype)
    if key == "phi-3.5-vision":
        return build_phi3v(path, scale, device, dtype, phi3v_remote_code(remote_code or []))
    raise ConfigError(f"no benchmark model {key!r}", hint="choose from " + ", ".join(MODELS))
