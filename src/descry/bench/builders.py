"""Architecture-exact, randomly initialised models for the benchmark, written like Hub checkpoints.

The sizes are the published configs (``configs.py``, written down as facts, nothing is downloaded):
BLIP-base is ``Salesforce/blip-image-captioning-base``, Qwen2.5-VL-7B is ``Qwen/Qwen2.5-VL-7B-Instruct``,
Phi-3.5-vision is ``microsoft/Phi-3.5-vision-instruct``. Weights are random, tokenizers (``vocab.py``) are
trained on the spot and padded with filler tokens to the real vocabulary size, so every id a random model
emits decodes. Timings mean what they would with the real weights once the output length is fixed.
The ``tiny`` scale keeps each architecture but shrinks it, for the smoke test.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from descry.bench.configs import (
    BLIP_BASE,
    BLIP_TINY,
    CLIP_MEAN,
    CLIP_STD,
    PHI35_TINY,
    PHI35_VISION,
    PHI_REMOTE_FILES,
    PHI_SPECIALS,
    QWEN25_VL_7B,
    QWEN25_VL_TINY,
    QWEN_REGULAR,
    QWEN_SPECIALS,
    QWEN_TEMPLATE,
)
from descry.bench.vocab import CORPUS, blip_tokenizer, padded_vocab, phi_tokenizer, qwen_tokenizer
from descry.errors import ConfigError

__all__ = [
    "BLIP_BASE",
    "BLIP_TINY",
    "CLIP_MEAN",
    "CLIP_STD",
    "CORPUS",
    "MODELS",
    "PHI35_TINY",
    "PHI35_VISION",
    "PHI_REMOTE_FILES",
    "PHI_SPECIALS",
    "QWEN25_VL_7B",
    "QWEN25_VL_TINY",
    "QWEN_REGULAR",
    "QWEN_SPECIALS",
    "QWEN_TEMPLATE",
    "BuiltModel",
    "Scale",
    "blip_tokenizer",
    "build",
    "build_blip",
    "build_phi3v",
    "build_qwen2_5_vl",
    "name_processor",
    "padded_vocab",
    "phi3v_remote_code",
    "phi_tokenizer",
    "qwen_tokenizer",
]

Scale = Literal["full", "tiny"]

MODELS = ("blip-base", "qwen2.5-vl-7b", "phi-3.5-vision", "florence-2-base", "smolvlm-256m")


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
    if key in ("florence-2-base", "smolvlm-256m"):
        from descry.bench.cpu_builders import build_florence2, build_smolvlm

        return (build_florence2 if key == "florence-2-base" else build_smolvlm)(path, scale, device, dtype)  # type: ignore[no-any-return]
    raise ConfigError(f"no benchmark model {key!r}", hint="choose from " + ", ".join(MODELS))
