"""Image-only processors: a family's own processor, with a video processor that needs no torchvision.

The stock processors of Qwen2/2.5/3-VL, InternVL, SmolVLM2, LLaVA-OneVision and Gemma 4 load a video processor,
and every video processor in transformers needs torchvision. descry captions images, so it gives these
processors a *still* video processor instead: transformers' base class, holding the checkpoint's video
settings (SmolVLM's chat template reads ``num_frames``) but never asked to process a video. The
processor class, its ``__init__`` and therefore every ``processor_config.json`` setting it takes
(``image_seq_length``, ``num_image_tokens``, ``vision_feature_select_strategy``, ...) stay the stock ones.
"""

from __future__ import annotations

import importlib
import sys
import types
from functools import cache
from typing import Any

from descry.errors import ConfigError, require

# model types whose stock processor builds a video processor, and that processor's class
VIDEO_PROCESSORS = {
    "qwen2_vl": "Qwen2VLProcessor",
    "qwen2_5_vl": "Qwen2_5_VLProcessor",
    "qwen3_vl": "Qwen3VLProcessor",
    "qwen3_vl_moe": "Qwen3VLProcessor",
    "internvl": "InternVLProcessor",
    "smolvlm": "SmolVLMProcessor",
    "llava_onevision": "LlavaOnevisionProcessor",
    "gemma4": "Gemma4Processor",
}

# model types whose stock processor is PixtralProcessor, which transformers gates behind torchvision
PIXTRAL_FAMILIES = frozenset({"mistral3", "pixtral"})
PIXTRAL = "transformers.models.pixtral"


def base_video_processor() -> Any:
    """transformers' base video processor class (it needs no torchvision)."""
    require("transformers")
    return importlib.import_module("transformers.video_processing_utils").BaseVideoProcessor


def still_video_processor(source: Any = None, **kwargs: Any) -> Any:
    """transformers' base video processor with the checkpoint's video settings, or the defaults when it has none."""
    base = base_video_processor()
    if source is None:
        return base()
    try:
        settings, _ = base.get_video_processor_dict(source, **kwargs)
    except OSError:
        return base()
    settings.pop("video_processor_type", None)
    settings.pop("processor_class", None)
    return base(**settings)


class ImageOnly:
    """Mixin over a stock processor: load and accept a still video processor in place of the real one."""

    _video: Any = None

    @property
    def video_processor(self) -> Any:
        if self._video is None:
            self._video = still_video_processor()
        return self._video

    @video_processor.setter
    def video_processor(self, value: Any) -> None:
        self._video = value

    def check_argument_for_proper_class(self, argument_name: str, argument: Any) -> Any:
        """transformers' own check looks video processors up in a mapping that needs torchvision."""
        if argument_name == "video_processor":
            base = base_video_processor()
            if argument is not None and not isinstance(argument, base):
                raise TypeError(f"Received a {type(argument).__name__} for video_processor, not a video processor")
            return base
        return super().check_argument_for_proper_class(argument_name, argument)  # type: ignore[misc]

    @classmethod
    def _get_arguments_from_pretrained(
        cls, pretrained_model_name_or_path: Any, processor_dict: Any = None, **kwargs: Any
    ) -> list[Any]:
        transformers = require("transformers")
        source = pretrained_model_name_or_path
        parts = {
            "tokenizer": lambda: transformers.AutoTokenizer.from_pretrained(source, **kwargs),
            "image_processor": lambda: transformers.AutoImageProcessor.from_pretrained(source, **kwargs),
            "feature_extractor": lambda: transformers.AutoFeatureExtractor.from_pretrained(source, **kwargs),
            "video_processor": lambda: still_video_processor(source, **kwargs),
        }
        return [parts[name]() for name in cls.get_attributes()]  # type: ignore[attr-defined]


@cache
def image_only_processor_class(model_type: str) -> Any:
    """The family's processor for images only: no torchvision, the stock ``__init__`` and settings."""
    transformers = require("transformers")
    base: Any = getattr(transformers, VIDEO_PROCESSORS[model_type], None)
    if not isinstance(base, type) or not hasattr(base, "_get_arguments_from_pretrained"):
        raise too_old(model_type, VIDEO_PROCESSORS[model_type], transformers.__version__)
    name = base.__name__.removesuffix("Processor") + "ImageOnlyProcessor"
    doc = f"{base.__name__} for images only: a still video processor, no torchvision."
    return type(name, (ImageOnly, base), {"__doc__": doc, "__module__": __name__})


@cache
def pixtral_processor_class() -> Any:
    """PixtralProcessor (Mistral 3), importable without torchvision.

    Its module imports one helper, ``get_resize_output_image_size``, from the torchvision image processor's
    module; the PIL image processor's module has the same function. Without torchvision, that module is
    stood in for by one holding the PIL version, so the stock processor class loads unchanged.
    """
    transformers = require("transformers")
    try:
        return importlib.import_module(f"{PIXTRAL}.processing_pixtral").PixtralProcessor
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] != "torchvision":
            raise too_old("mistral3", "PixtralProcessor", transformers.__version__) from exc
    try:
        pil = importlib.import_module(f"{PIXTRAL}.image_processing_pil_pixtral")
    except ModuleNotFoundError as exc:
        raise too_old("mistral3", "a PIL Pixtral image processor", transformers.__version__) from exc
    stand_in = types.ModuleType(f"{PIXTRAL}.image_processing_pixtral", "PIL stand-in: no torchvision here")
    stand_in.get_resize_output_image_size = pil.get_resize_output_image_size  # type: ignore[attr-defined]
    sys.modules[stand_in.__name__] = stand_in
    sys.modules.pop(f"{PIXTRAL}.processing_pixtral", None)
    return importlib.import_module(f"{PIXTRAL}.processing_pixtral").PixtralProcessor


def too_old(model_type: str, what: str, version: str) -> ConfigError:
    return ConfigError(
        f"transformers {version} has no {what}, which {model_type} models need",
        hint="upgrade transformers: pip install -U transformers",
    )
