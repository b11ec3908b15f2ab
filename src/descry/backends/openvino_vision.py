"""Florence-2's vision encoder (DaViT and its projection) on OpenVINO's CPU runtime, the rest in torch.

Opt-in with ``DESCRY_MODEL__OPTIONS='{"vision_runtime": "openvino"}'`` (``pip install 'descry[openvino]'``).
The encoder is converted once with ``openvino.convert_model`` and kept as OpenVINO IR under
``$XDG_CACHE_HOME/descry/openvino`` (keyed by the model's files), so later starts only compile it. It runs
in the model's precision: OpenVINO's bf16 where descry runs the model in bf16 (``--dtype auto`` on CPUs with
AMX or AVX512-BF16), f32 otherwise. The text encoder and beam-search decoder stay in torch.
"""

from __future__ import annotations

import copy
import hashlib
import os
import warnings
from pathlib import Path
from typing import Any

from descry.errors import ConfigError, require

VISION_RUNTIMES = ("torch", "openvino")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "descry" / "openvino"


def model_key(model: Any, size: tuple[int, int]) -> str:
    """A name for a converted encoder: the model's config (not its dtype), its weight files' sizes and times,
    the input size."""
    source = Path(str(getattr(model, "name_or_path", "") or ""))
    files = sorted(source.glob("*.safetensors")) if source.is_dir() else []
    config = {k: v for k, v in model.config.to_dict().items() if k not in {"dtype", "torch_dtype"}}
    weights = [f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files]
    stamp = [repr(sorted(config.items())), repr(size), *weights]
    return hashlib.sha256("\n".join(stamp).encode()).hexdigest()[:20]


def convert(model: Any, size: tuple[int, int], path: Path) -> Any:
    """The OpenVINO model of ``model``'s vision encoder, read from ``path`` or converted and saved there."""
    ov = require("openvino", "openvino")
    torch = require("torch")
    if path.is_file():
        return ov.Core().read_model(path)
    inner = copy.deepcopy(model.model).float().eval()  # converted from fp32; the precision is chosen at compile
    inner.__dict__.pop("get_image_features", None)  # the copy computes in torch, not through this module

    class Encoder(torch.nn.Module):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, pixels: Any) -> Any:
            return self.inner.get_image_features(pixels).pooler_output

    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on constants, not the user's business
        converted = ov.convert_model(Encoder().eval(), example_input=torch.zeros(1, 3, *size))
    path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(converted, path)
    return converted


def use_openvino_vision(model: Any, device: str, dtype: Any) -> None:
    """Replace ``model.model.get_image_features`` by OpenVINO's compiled encoder, one image per call; the
    encoder is converted (or read from the cache) and compiled on the first call, for that input size."""
    ov = require("openvino", "openvino")
    torch = require("torch")
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    if device != "cpu":
        raise ConfigError(
            f"the vision_runtime option openvino runs on a CPU; this model is on {device}",
            hint="drop the vision_runtime option, or use --device cpu",
        )
    if getattr(model.config, "model_type", None) != "florence2":
        raise ConfigError(
            "the vision_runtime option openvino runs Florence-2's vision encoder only",
            hint="drop the vision_runtime option for this model",
        )
    precision = "bf16" if dtype == torch.bfloat16 else "f32"
    config = {"INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": torch.get_num_threads()}
    compiled: dict[tuple[int, int], Any] = {}

    def get_image_features(pixel_values: Any, **_: Any) -> Any:
        size = (int(pixel_values.shape[-2]), int(pixel_values.shape[-1]))
        if size not in compiled:
            converted = convert(model, size, cache_dir() / f"florence2-vision-{model_key(model, size)}.xml")
            compiled[size] = ov.Core().compile_model(converted, "CPU", config)
        run = compiled[size]
        rows = [torch.from_numpy(run(image[None].float().numpy())[0]) for image in pixel_values]
        return BaseModelOutputWithPooling(pooler_output=torch.cat(rows).to(dtype))

    model.model.get_image_features = get_image_features
