"""Tiny stock-layout checkpoints of every hf_vlm family, built once per session, and the reference side.

The reference is each model card's own code, one image at a time: ``processor.apply_chat_template(...,
add_generation_prompt=True, tokenize=True, return_dict=True)`` for chat models, the processor called on the
task prefix for PaliGemma, then ``model.generate(..., do_sample=False)``. It loads the stock processor
class; only for the families whose stock processor wants a torchvision video processor is that processor
built by hand (settings from processor_config.json, a base video processor in place of the video one).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from PIL import Image  # noqa: E402

from tests.tiny.hf_vlm import build_tiny_idefics3, build_tiny_llava, build_tiny_qwen2_5_vl  # noqa: E402
from tests.tiny.vlm_classic import build_tiny_llava_next, build_tiny_mllama, build_tiny_paligemma2  # noqa: E402
from tests.tiny.vlm_families import (  # noqa: E402
    build_tiny_gemma3,
    build_tiny_gemma4,
    build_tiny_qwen2_vl,
    build_tiny_qwen3_vl,
    build_tiny_qwen3_vl_moe,
)
from tests.tiny.vlm_more import build_tiny_aya_vision, build_tiny_mistral3  # noqa: E402
from tests.tiny.vlm_tiled import build_tiny_internvl, build_tiny_llava_onevision, build_tiny_smolvlm2  # noqa: E402

FAMILIES: dict[str, Callable[[Path], Path]] = {
    "aya_vision": build_tiny_aya_vision,
    "gemma3": build_tiny_gemma3,
    "gemma4": build_tiny_gemma4,
    "idefics3": build_tiny_idefics3,
    "internvl": build_tiny_internvl,
    "llava": build_tiny_llava,
    "llava_next": build_tiny_llava_next,
    "llava_onevision": build_tiny_llava_onevision,
    "mistral3": build_tiny_mistral3,
    "mllama": build_tiny_mllama,
    "paligemma2": build_tiny_paligemma2,
    "qwen2_5_vl": build_tiny_qwen2_5_vl,
    "qwen2_vl": build_tiny_qwen2_vl,
    "qwen3_vl": build_tiny_qwen3_vl,
    "qwen3_vl_moe": build_tiny_qwen3_vl_moe,
    "smolvlm2": build_tiny_smolvlm2,
}
PREFIX_FAMILIES = {"paligemma"}

# stock processors that build a torchvision video processor, by model type
VIDEO_FAMILIES = {
    "qwen2_vl": "Qwen2VLProcessor",
    "qwen2_5_vl": "Qwen2_5_VLProcessor",
    "qwen3_vl": "Qwen3VLProcessor",
    "qwen3_vl_moe": "Qwen3VLProcessor",
    "internvl": "InternVLProcessor",
    "smolvlm": "SmolVLMProcessor",
    "llava_onevision": "LlavaOnevisionProcessor",
    "gemma4": "Gemma4Processor",
}


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """The directory of a family's tiny checkpoint, built on first use."""
    built: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in built:
            built[family] = FAMILIES[family](tmp_path_factory.mktemp(f"parity-{family}"))
        return built[family]

    return get


def textured(size: tuple[int, int], seed: int) -> Image.Image:
    """A noisy gradient: every pixel matters, so pixel handling shows in the output."""
    import numpy as np

    rng = np.random.default_rng(seed)
    width, height = size
    ramp = np.linspace(0, 255, width)[None, :, None] * np.linspace(0.2, 1.0, height)[:, None, None]
    noise = rng.integers(0, 256, (height, width, 3))
    pixels = (0.5 * ramp + 0.5 * noise).clip(0, 255).astype("uint8")
    return Image.fromarray(pixels, "RGB")


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def reference_processor(path: Path) -> Any:
    """The stock processor, as AutoProcessor.from_pretrained builds it (by hand where torchvision is missing)."""
    import transformers
    from transformers.video_processing_utils import BaseVideoProcessor

    model_type = _json(path / "config.json")["model_type"]
    if model_type == "mistral3":  # the stock class; importing it needs a stand-in module without torchvision
        from descry.backends.hf_processors import pixtral_processor_class

        return pixtral_processor_class().from_pretrained(path)
    if model_type not in VIDEO_FAMILIES:
        return transformers.AutoProcessor.from_pretrained(path)
    stock = getattr(transformers, VIDEO_FAMILIES[model_type])

    class Reference(stock):  # type: ignore[misc, valid-type]
        def check_argument_for_proper_class(self, argument_name: str, argument: Any) -> Any:
            if argument_name == "video_processor":  # transformers' check needs torchvision
                return type(argument)
            return super().check_argument_for_proper_class(argument_name, argument)

    parts = {"image_processor", "tokenizer", "video_processor", "feature_extractor"}
    named = set(inspect.signature(stock.__init__).parameters) - {"self", *parts}
    settings = {k: v for k, v in _json(path / "processor_config.json").items() if k in named}
    video = {
        k: v
        for k, v in _json(path / "video_preprocessor_config.json").items()
        if k not in {"video_processor_type", "processor_class"}
    }
    if "feature_extractor" in inspect.signature(stock.__init__).parameters:
        settings["feature_extractor"] = transformers.AutoFeatureExtractor.from_pretrained(path)
    template = path / "chat_template.jinja"
    return Reference(
        image_processor=transformers.AutoImageProcessor.from_pretrained(path),
        tokenizer=transformers.AutoTokenizer.from_pretrained(path),
        video_processor=BaseVideoProcessor(**video),
        **{"chat_template": template.read_text() if template.is_file() else None, **settings},
    )


class Reference:
    """A family's model-card code: one image at a time, greedy."""

    def __init__(self, path: Path) -> None:
        from transformers import AutoModelForImageTextToText

        self.model_type = _json(path / "config.json")["model_type"]
        self.processor = reference_processor(path)
        self.model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32).eval()

    def inputs(self, image: Image.Image, prompt: str) -> Any:
        if self.model_type in PREFIX_FAMILIES:
            return self.processor(text=prompt, images=image, return_tensors="pt")
        messages = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": prompt}]}]
        return self.processor.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
        )

    def tokens(self, image: Image.Image, prompt: str, max_new_tokens: int) -> list[int]:
        inputs = self.inputs(image, prompt)
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        return until_eos(out[0, inputs["input_ids"].shape[1] :].tolist(), self.eos())

    def eos(self) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        return {eos} if isinstance(eos, int) else set(eos or [])


def until_eos(tokens: list[int], eos: set[int]) -> list[int]:
    """The generated tokens up to and including the first eos (what follows is padding)."""
    stop = next((i for i, tok in enumerate(tokens) if tok in eos), None)
    return tokens if stop is None else tokens[: stop + 1]
