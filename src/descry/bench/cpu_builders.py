"""Architecture-exact random models of the CPU profile: Florence-2-base (descry's default) and SmolVLM-256M.

Like ``builders.py``: the published config (``configs.py``), random weights, a tokenizer trained on the
spot and padded to the real vocabulary size, saved like a Hub checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from descry.bench.configs import (
    CLIP_MEAN,
    CLIP_STD,
    FLORENCE2_BASE,
    FLORENCE2_TINY,
    FLORENCE_POST_PROCESSOR,
    IMAGENET_MEAN,
    IMAGENET_STD,
    SMOLVLM_256M,
    SMOLVLM_TEMPLATE,
    SMOLVLM_TINY,
)
from descry.bench.vocab import florence_tokenizer, smolvlm_tokenizer


def florence_processor(side: int, patches: int) -> Any:
    """Florence2Processor: CLIP-style resize to ``side`` x ``side`` (no crop), ``patches`` + 1 image tokens."""
    from transformers import CLIPImageProcessorPil, Florence2Processor

    tokenizer = florence_tokenizer()
    image_processor = CLIPImageProcessorPil(
        size={"height": side, "width": side},
        do_center_crop=False,
        image_mean=IMAGENET_MEAN,
        image_std=IMAGENET_STD,
        resample=3,
    )
    image_processor.image_seq_length = patches + 1  # type: ignore[attr-defined]
    return Florence2Processor(
        image_processor=image_processor, tokenizer=tokenizer, post_processor_config=FLORENCE_POST_PROCESSOR
    )


def florence_model(sizes: dict[str, Any], tokenizer: Any, device: str, dtype: Any) -> Any:
    """A random Florence2ForConditionalGeneration with the generation settings of the published model."""
    import torch
    from transformers import Florence2Config, Florence2ForConditionalGeneration

    text = {
        "model_type": "bart",
        **sizes["text"],
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "decoder_start_token_id": tokenizer.eos_token_id,
        "forced_bos_token_id": tokenizer.bos_token_id,
        "forced_eos_token_id": tokenizer.eos_token_id,
    }
    config = Florence2Config(text_config=text, vision_config=sizes["vision"], image_token_id=tokenizer.image_token_id)
    torch.manual_seed(0)
    with torch.device(device):
        model = Florence2ForConditionalGeneration._from_config(config, dtype=dtype)
    return model.eval()


def build_florence2(path: Path, scale: str, device: str, dtype: Any) -> Any:
    """Florence-2-base: DaViT at 768 px (24 x 24 + 1 image tokens), BART-base encoder-decoder."""
    from descry.bench.builders import BuiltModel, _count, _save

    sizes: dict[str, Any] = FLORENCE2_BASE if scale == "full" else FLORENCE2_TINY
    side = int(sizes["image_size"])
    stride = 1
    for step in sizes["vision"]["patch_stride"]:
        stride *= int(step)
    processor = florence_processor(side, (side // stride) ** 2)
    model = florence_model(sizes, processor.tokenizer, device, dtype)
    _save(path, model, processor)
    label = "Florence-2-base (florence-community/Florence-2-base)"
    return BuiltModel("florence-2-base", label, path, "florence2", _count(model), side * side)


def build_smolvlm(path: Path, scale: str, device: str, dtype: Any) -> Any:
    """SmolVLM-256M-Instruct (Idefics3): SigLIP-B/16 512 px tiles, SmolLM2-135M decoder."""
    import torch
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessorPil,
        Idefics3Processor,
    )

    from descry.bench.builders import BuiltModel, _count, _save, name_processor

    sizes: dict[str, Any] = SMOLVLM_256M if scale == "full" else SMOLVLM_TINY
    tokenizer = smolvlm_tokenizer()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<image>", "<end_of_utterance>", "<|endoftext|>")}
    tile, patch, factor = sizes["vision"]["image_size"], sizes["vision"]["patch_size"], sizes["scale_factor"]
    text = {**sizes["text"], "bos_token_id": 1, "eos_token_id": ids["<end_of_utterance>"], "pad_token_id": 0}
    config = Idefics3Config(
        vision_config=sizes["vision"],
        text_config=text,
        image_token_id=ids["<image>"],
        scale_factor=factor,
        pad_token_id=0,  # type: ignore[call-arg]
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = Idefics3ForConditionalGeneration._from_config(config, dtype=dtype).eval()
    model.generation_config.eos_token_id = ids["<end_of_utterance>"]
    model.generation_config.pad_token_id = 0
    image_processor = Idefics3ImageProcessorPil(
        size={"longest_edge": sizes["longest_edge"]},
        max_image_size={"longest_edge": tile},
        do_image_splitting=True,
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
    )
    processor = Idefics3Processor(
        image_processor, tokenizer, image_seq_len=(tile // patch) ** 2 // factor**2, chat_template=SMOLVLM_TEMPLATE
    )
    _save(path, model, processor)
    name_processor(path, "Idefics3Processor")
    label = "SmolVLM-256M-Instruct (HuggingFaceTB/SmolVLM-256M-Instruct)"
    return BuiltModel("smolvlm-256m", label, path, "hf_vlm", _count(model), sizes["longest_edge"] ** 2)
