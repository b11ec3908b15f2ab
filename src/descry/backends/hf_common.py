"""Shared pieces of the transformers backends: imports, device and dtype, loading, generate kwargs."""

from __future__ import annotations

import importlib
import importlib.util
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from descry.backends.base import Backend, BackendOptions, ModelSpec
from descry.backends.beam_cache import skip_cross_attention_reorder
from descry.backends.vision_attention import fuse_vision_attention
from descry.cpu_features import cpu_precision
from descry.errors import ConfigError, DescryError, MissingDependency, ModelNotFound, OutOfMemory, require
from descry.schemas import GenerationParams

T = TypeVar("T")


def resolve_device(requested: str) -> str:
    """'auto' picks CUDA, then Apple MPS, then CPU; an explicit device must exist."""
    torch = require("torch")
    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {requested!r} was asked for but CUDA is not available", hint="use --device cpu")
    if requested == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("device 'mps' was asked for but Apple MPS is not available", hint="use --device cpu")
    if requested not in {"cpu", "mps"} and not requested.startswith("cuda"):
        raise ConfigError(f"unknown device {requested!r}", hint="use auto, cpu, cuda, cuda:N or mps")
    return requested


def resolve_dtype(requested: str, device: str, quantization: str = "none") -> Any:
    """'auto' is bf16 on CUDA that supports it, fp16 on other CUDA and MPS, and on a CPU bf16 where it
    has AMX or AVX512-BF16, else fp32 (``descry.cpu_features``)."""
    torch = require("torch")
    if requested != "auto":
        return getattr(torch, requested)
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "mps":
        return torch.float16
    return getattr(torch, cpu_precision("auto", quantization=quantization).dtype)


ATTENTION_CHOICES = ("eager", "flash_attention_2", "sdpa")


def attention_for(device: str, options: dict[str, Any], *, fallback: str = "sdpa") -> str:
    """flash-attn on CUDA when it is installed, else ``fallback``; an ``attn_implementation`` option wins."""
    chosen = options.get("attn_implementation")
    if chosen:
        if chosen not in ATTENTION_CHOICES:
            raise ConfigError(
                f"unknown attn_implementation {chosen!r}", hint=f"use one of {', '.join(ATTENTION_CHOICES)}"
            )
        return str(chosen)
    if device.startswith("cuda") and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return fallback


def quantization_config(spec: ModelSpec, device: str) -> Any | None:
    """bitsandbytes 8/4-bit on CUDA; 8-bit on CPU is torch's dynamic int8 (see finish_loading)."""
    if spec.quantization == "none":
        return None
    if device == "cpu" and spec.quantization == "8bit":
        return None
    if not device.startswith("cuda"):
        raise ConfigError(
            f"{spec.quantization} loading needs a CUDA GPU (bitsandbytes); this run is on {device}",
            hint="use 8bit on CPU (dynamic int8), drop the quantization, or use --dtype bfloat16 to halve memory",
        )
    require("bitsandbytes", "hf")
    transformers = require("transformers")
    if spec.quantization == "8bit":
        return transformers.BitsAndBytesConfig(load_in_8bit=True)
    torch = require("torch")
    return transformers.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.bfloat16)


@dataclass(frozen=True)
class Placement:
    """Where and how a model's weights live: device, dtype and bitsandbytes config (or None)."""

    device: str
    dtype: Any
    quantization: Any

    def load_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"dtype": self.dtype}
        if self.quantization is not None:
            kwargs.update(quantization_config=self.quantization, device_map={"": self.device})
        return kwargs


def placement(spec: ModelSpec) -> Placement:
    """Resolve the spec's device, dtype and quantization once, before loading."""
    device = resolve_device(spec.device)
    return Placement(device, resolve_dtype(spec.dtype, device, spec.quantization), quantization_config(spec, device))


def finish_loading(model: Any, spec: ModelSpec, where: Placement) -> Any:
    """Move a loaded model to its device (unless bitsandbytes placed it), int8 on CPU if asked, eval mode.

    Vision attention runs fused (backends/vision_attention) unless an ``attn_implementation`` option was given.
    """
    if where.quantization is None:
        model.to(where.device)
    if where.device == "cpu" and spec.quantization == "8bit":
        model = quantize_cpu_int8(model)
    if not spec.options.get("attn_implementation"):
        fuse_vision_attention(model)
    skip_cross_attention_reorder(model)
    model.eval()
    if spec.compile:
        model.forward = require("torch").compile(model.forward, dynamic=True)
    return model


def quantize_cpu_int8(model: Any) -> Any:
    """Dynamic int8 for the Linear layers: the CPU alternative to bitsandbytes 8-bit."""
    torch = require("torch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def release(device: str) -> None:
    """Give cached device memory back after a model is dropped."""
    if device.startswith("cuda"):
        require("torch").cuda.empty_cache()


def load_pretrained(loader: Callable[..., T], spec: ModelSpec, **kwargs: Any) -> T:
    """Call ``loader.from_pretrained`` for the spec's model, turning 'not found' and 'not installed' into a fix."""
    source = spec.model_id
    kwargs = {**model_source(spec), **kwargs}
    try:
        return loader(  # type: ignore[call-arg]
            source,
            revision=spec.revision,
            trust_remote_code=spec.trust_remote_code,
            **kwargs,
        )
    except ImportError as exc:
        raise missing_package(spec, exc) from exc
    except OSError as exc:
        raise model_not_found(spec, exc) from exc
    except ValueError as exc:
        if "connect" in str(exc).lower() or "offline" in str(exc).lower():
            raise model_not_found(spec, exc) from exc
        raise


# a Hugging Face model id: NAME or OWNER/NAME; anything else given to --model is meant as a path
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


def presets_hint(name: str) -> str:
    """'did you mean <closest preset>?' when one is close, and where the presets are listed."""
    from descry.backends.registry import closest_preset

    close = closest_preset(name)
    return f"{f'did you mean --model {close}? ' if close else ''}`descry models` lists the presets"


def model_source(spec: ModelSpec) -> dict[str, Any]:
    """Check that the spec's model can be had before transformers looks for it; extra from_pretrained kwargs.

    A directory must hold config.json; a path that does not exist is never sent to the hub; a model id
    that is not in the local cache fails at once when downloads are off (HF_HUB_OFFLINE=1) or the hub
    cannot be reached, instead of after transformers' retries. A cached id with no hub loads from the cache.
    """
    from descry.backends import hub
    from descry.backends.registry import preset_of

    name = spec.model_id
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFound(
                f"directory {name} has no config.json, so it is not a saved model",
                hint=f"point --model at a folder written by save_pretrained (config.json, weights, processor "
                f"files), or use a preset: {presets_hint(name)}",
            )
        return {}
    if path.exists():
        raise ModelNotFound(f"{name} is a file, not a model directory", hint=presets_hint(name))
    if not HUB_ID.fullmatch(name):
        raise ModelNotFound(
            f"there is no directory {name} (and it is not a preset or a Hugging Face model id)",
            hint=presets_hint(name),
        )
    downloads_off = hub.offline()
    if hub.cached(name, spec.revision):
        return {"local_files_only": True} if downloads_off or not hub.reachable() else {}
    if downloads_off:
        why = "HF_HUB_OFFLINE=1 forbids downloading it"
    elif not hub.reachable():
        why = f"the hub ({hub.endpoint()}) cannot be reached"
    else:
        return {}
    preset = preset_of(name)
    if preset is not None:
        raise ModelNotFound(
            f"preset {preset} ({name}) is not in the local Hugging Face cache, and {why}",
            hint="connect once to download it, point HF_HOME at a cache that holds it, "
            "or pass a local model directory with --model",
        )
    raise ModelNotFound(
        f"{name!r} is not a preset, not a local directory, and not in the local Hugging Face cache, and {why}",
        hint=f"{presets_hint(name)}; a Hugging Face model id needs the hub once, or HF_HOME pointing at a cache "
        "that holds it",
    )


def model_not_found(spec: ModelSpec, exc: BaseException) -> DescryError:
    """Why transformers could not load the model: a directory's problem, a gated repo, or not cached."""
    from descry.backends import hub

    gated = _gated_cause(exc)
    if gated is not None:
        return hub.hub_error(gated, spec.model_id, spec.revision)
    if Path(spec.model_id).exists():
        return ModelNotFound(
            f"could not load the model from directory {spec.model_id}: {str(exc).splitlines()[0]}",
            hint="the directory must hold config.json, the weights and the processor files (save_pretrained)",
        )
    return ModelNotFound(
        f"model {spec.model_id!r} is not in the local Hugging Face cache and could not be downloaded",
        hint=(
            f"connect to the internet once and run `descry pull {spec.model_id}`, point HF_HOME at a cache that "
            f"holds it, or pass a local directory with --model /path/to/model; {presets_hint(spec.model_id)}"
        ),
    )


def _gated_cause(exc: BaseException) -> BaseException | None:
    """The huggingface_hub GatedRepoError behind a transformers OSError, if that is what it was."""
    seen: BaseException | None = exc
    for _ in range(8):  # a chain can loop back on itself
        if seen is None or type(seen).__name__ == "GatedRepoError":
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


# where transformers and model code name a missing package: "No module named 'x'",
# "X requires the Torchvision library but it was not found", "Package `num2words` is required"
MISSING_PACKAGE = (
    re.compile(r"No module named '([\w.-]+)'"),
    re.compile(r"requires the ([\w.-]+) librar", re.IGNORECASE),
    re.compile(r"[Pp]ackage `?([\w.-]+)`? is required"),
)
HF_EXTRA_PACKAGES = {"torch", "transformers", "tokenizers", "accelerate", "safetensors", "einops", "huggingface_hub"}


def missing_package(spec: ModelSpec, exc: ImportError) -> ConfigError:
    """The package a model's loading code could not import, and how to install it."""
    name = exc.name if isinstance(exc, ModuleNotFoundError) and exc.name else None
    for pattern in MISSING_PACKAGE:
        found = None if name else pattern.search(str(exc))
        name = name or (found.group(1) if found else None)
    if not name:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return ConfigError(
            f"model {spec.model_id} needs a Python package that is not installed: {first}",
            hint="install the package it names with pip install -c constraints.txt <package>",
        )
    package = name.split(".")[0].lower()
    extra = "hf" if package in HF_EXTRA_PACKAGES else None
    return MissingDependency(package, extra, needed_by=f"model {spec.model_id}")


def generate_kwargs(params: GenerationParams) -> dict[str, Any]:
    """transformers ``generate`` keyword arguments for the parameters that are set.

    Whatever is left unset (``None``) is not sent, so the checkpoint's ``generation_config.json`` decides it
    (repetition penalty, eos ids, top_p/top_k when sampling): user over preset over checkpoint.
    """
    kwargs: dict[str, Any] = {"max_new_tokens": params.max_new_tokens}
    if params.num_beams is not None:
        kwargs["num_beams"] = params.num_beams
    if params.repetition_penalty is not None:
        kwargs["repetition_penalty"] = params.repetition_penalty
    if params.min_new_tokens:
        kwargs["min_new_tokens"] = params.min_new_tokens
    if params.temperature is not None and params.temperature > 0:
        kwargs.update(do_sample=True, temperature=params.temperature)
        if params.top_p is not None:
            kwargs["top_p"] = params.top_p
    elif params.temperature is not None:
        kwargs["do_sample"] = False
    return kwargs


def batch_params(params: list[GenerationParams]) -> GenerationParams:
    """One parameter set for a batch: items are grouped by parameters, so they agree."""
    first = params[0]
    if any(p != first for p in params[1:]):
        raise ValueError("a batch must share its generation parameters; group items by parameters first")
    return first


def is_oom(exc: BaseException) -> bool:
    torch = require("torch")
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def run_guarded(fn: Callable[[], T]) -> T:
    """Run device work, turning a device out-of-memory into descry's OutOfMemory."""
    try:
        return fn()
    except RuntimeError as exc:
        if is_oom(exc):
            raise OutOfMemory("the device ran out of memory for this batch", hint="lower --batch-size") from exc
        raise


def load_processor(spec: ModelSpec) -> Any:
    """The model's AutoProcessor; a directory without processor files is a ModelNotFound with the fix."""
    transformers = require("transformers")
    try:
        return load_pretrained(transformers.AutoProcessor.from_pretrained, spec)
    except ValueError as exc:
        raise model_not_found(spec, exc) from exc


class TransformersOptions(BackendOptions):
    """Options every transformers backend reads."""

    attn_implementation: Literal["eager", "sdpa", "flash_attention_2"] | None = None


class TransformersBackend(Backend):
    """A backend holding a transformers model and processor; closing drops both and frees the device."""

    Options = TransformersOptions
    model: Any = None
    processor: Any = None
    dtype: Any = None

    def close(self) -> None:
        self.model = None
        self.processor = None
        release(self.device)
        super().close()
