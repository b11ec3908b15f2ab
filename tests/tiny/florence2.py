"""A tiny, randomly initialised native Florence-2 model (DaViT + BART), saved to a directory."""

from __future__ import annotations

from pathlib import Path

from descry.bench.configs import FLORENCE_POST_PROCESSOR, FLORENCE_TAGS, IMAGENET_MEAN, IMAGENET_STD

# The sentences Florence2Processor turns task tokens into, plus a few captions.
CORPUS = [
    "What does the image describe?",
    "Describe in detail what is shown in the image.",
    "Describe with a paragraph what is shown in the image.",
    "Locate the objects with category name in the image.",
    "What is the text in the image?",
    "What is the text in the image, with regions?",
    "a dog running on the beach next to a red car",
    "two cats sleeping on a couch, a window and a green tree",
]
TAG_TOKENS = FLORENCE_TAGS
LOC_TOKENS = [f"<loc_{i}>" for i in range(1000)]
IMAGE_SIZE = 32
STRIDES = (4, 2)
POST_PROCESSOR_CONFIG = FLORENCE_POST_PROCESSOR


def _tokenizer():  # type: ignore[no-untyped-def]
    """A byte-level BPE (BART) tokenizer trained on the spot, with Florence-2's task and location tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import BartTokenizer

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    raw.train_from_iterator(CORPUS * 4, trainer)
    vocab = raw.get_vocab()
    vocab["<mask>"] = len(vocab)
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in _merges(raw)]
    tokenizer = BartTokenizer(vocab=vocab, merges=merges, extra_special_tokens={"image_token": "<image>"})
    tokenizer.add_special_tokens(
        {"extra_special_tokens": TAG_TOKENS + LOC_TOKENS}, replace_extra_special_tokens=False
    )
    return tokenizer


def _merges(raw) -> list:  # type: ignore[no-untyped-def]
    import json

    return list(json.loads(raw.to_str())["model"]["merges"])


def build_tiny_florence2(path: Path) -> Path:
    """Save a tiny Florence2ForConditionalGeneration + Florence2Processor into ``path`` and return it."""
    import torch
    from transformers import (
        CLIPImageProcessorPil,
        Florence2Config,
        Florence2ForConditionalGeneration,
        Florence2Processor,
    )

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer()
    grid = IMAGE_SIZE // (STRIDES[0] * STRIDES[1])
    image_processor = CLIPImageProcessorPil(
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        do_center_crop=False,
        image_mean=IMAGENET_MEAN,
        image_std=IMAGENET_STD,
    )
    image_processor.image_seq_length = grid * grid + 1
    processor = Florence2Processor(
        image_processor=image_processor, tokenizer=tokenizer, post_processor_config=POST_PROCESSOR_CONFIG
    )
    vision = {
        "depths": [1, 1], "patch_size": [7, 3], "patch_stride": list(STRIDES), "patch_padding": [3, 1],
        "patch_prenorm": [False, True], "embed_dim": [16, 32], "num_heads": [1, 2], "num_groups": [1, 2],
        "window_size": 2, "projection_dim": 32, "max_position_embeddings": 16, "drop_path_rate": 0.0,
    }
    text = {
        "model_type": "bart", "vocab_size": len(tokenizer), "d_model": 32, "encoder_layers": 1,
        "decoder_layers": 1, "encoder_attention_heads": 2, "decoder_attention_heads": 2,
        "encoder_ffn_dim": 64, "decoder_ffn_dim": 64, "max_position_embeddings": 128,
        "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id, "decoder_start_token_id": tokenizer.eos_token_id,
        "forced_bos_token_id": tokenizer.bos_token_id, "forced_eos_token_id": tokenizer.eos_token_id,
    }
    config = Florence2Config(
        text_config=text, vision_config=vision, image_token_id=tokenizer.image_token_id
    )
    torch.manual_seed(0)
    model = Florence2ForConditionalGeneration(config).eval()
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path
