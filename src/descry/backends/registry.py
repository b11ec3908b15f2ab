"""Model presets and backend plugins.

Backends are found through the ``descry.backends`` entry-point group; the built-ins are
registered the same way in pyproject.toml, so a plugin package is a first-class citizen.
"""

from __future__ import annotations

from dataclasses import replace
from importlib.metadata import entry_points
from pathlib import Path

from descry.backends.base import DEFAULT_PARAMS, Backend, ModelSpec
from descry.config import ModelSettings
from descry.errors import ConfigError
from descry.schemas import GenerationParams

ENTRY_POINT_GROUP = "descry.backends"

BRIEF = "Describe this image in one sentence."
DETAILED = "Describe this image in detail: the subjects, setting, colours, actions and any visible text."


def _florence(model_id: str) -> ModelSpec:
    return ModelSpec(
        model_id=model_id,
        backend="florence2",
        default_task="<CAPTION>",
        detailed_task="<MORE_DETAILED_CAPTION>",
        params=DEFAULT_PARAMS.model_copy(update={"max_new_tokens": 64, "num_beams": 3}),
    )


def _chat(model_id: str, backend: str = "hf_vlm", **options: object) -> ModelSpec:
    return ModelSpec(
        model_id=model_id,
        backend=backend,
        default_prompt=BRIEF,
        detailed_prompt=DETAILED,
        params=DEFAULT_PARAMS.model_copy(update={"max_new_tokens": 96}),
        options=dict(options),
    )


PRESETS: dict[str, ModelSpec] = {
    "florence-2-base": _florence("florence-community/Florence-2-base"),
    "florence-2-large": _florence("florence-community/Florence-2-large"),
    "blip-base": ModelSpec(
        model_id="Salesforce/blip-image-captioning-base",
        backend="blip",
        params=DEFAULT_PARAMS.model_copy(update={"max_new_tokens": 40}),
    ),
    "blip-large": ModelSpec(
        model_id="Salesforce/blip-image-captioning-large",
        backend="blip",
        params=DEFAULT_PARAMS.model_copy(update={"max_new_tokens": 40}),
    ),
    "phi-3.5-vision": replace(
        _chat("microsoft/Phi-3.5-vision-instruct", backend="phi3v", num_crops=4),
        trust_remote_code=True,
    ),
    "qwen2.5-vl-3b": _chat("Qwen/Qwen2.5-VL-3B-Instruct", max_pixels=768 * 28 * 28),
    "qwen2.5-vl-7b": _chat("Qwen/Qwen2.5-VL-7B-Instruct", max_pixels=768 * 28 * 28),
    "smolvlm": _chat("HuggingFaceTB/SmolVLM-Instruct"),
    "smolvlm-256m": _chat("HuggingFaceTB/SmolVLM-256M-Instruct"),
    "llava-1.5-7b": _chat("llava-hf/llava-1.5-7b-hf"),
}

PRESET_NOTES: dict[str, str] = {
    "florence-2-base": "0.23B, fast on CPU (default)",
    "florence-2-large": "0.77B, better detail",
    "blip-base": "0.25B, short captions, fastest",
    "blip-large": "0.47B, short captions",
    "phi-3.5-vision": "4.2B instruct, remote code",
    "qwen2.5-vl-3b": "3B instruct, GPU recommended",
    "qwen2.5-vl-7b": "7B instruct, GPU",
    "smolvlm": "2B instruct",
    "smolvlm-256m": "256M instruct, CPU friendly",
    "llava-1.5-7b": "7B instruct, GPU",
}

# config.json model_type -> backend, for model ids and directories that are not presets
MODEL_TYPE_BACKENDS = {
    "florence2": "florence2",
    "blip": "blip",
    "phi3_v": "phi3v",
}


def closest_preset(name: str) -> str | None:
    """The preset a mistyped name most likely meant (``florence2-base``: florence-2-base), or None."""
    import difflib

    tail = name.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1].lower()
    matches = difflib.get_close_matches(tail, list(PRESETS), n=1, cutoff=0.6)
    return matches[0] if matches else None


def preset_of(model_id: str) -> str | None:
    """The preset that resolves to this model id, if one does."""
    return next((name for name, spec in PRESETS.items() if spec.model_id == model_id), None)


def backend_class(name: str) -> type[Backend]:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            cls: type[Backend] = ep.load()
            return cls
    names = ", ".join(sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)))
    raise ConfigError(f"unknown backend {name!r}", hint=f"available backends: {names}")


def _guess_backend(model: str) -> str:
    """Pick a backend for a model id or directory that is not a preset."""
    config = Path(model) / "config.json"
    if config.is_file():
        import json

        model_type = json.loads(config.read_text()).get("model_type", "")
        return MODEL_TYPE_BACKENDS.get(model_type, "hf_vlm")
    lowered = model.lower()
    if "florence" in lowered:
        return "florence2"
    if "blip" in lowered and "blip2" not in lowered:
        return "blip"
    if "phi-3" in lowered and "vision" in lowered:
        return "phi3v"
    return "hf_vlm"


def resolve_spec(settings: ModelSettings, *, test_mode: bool = False) -> ModelSpec:
    """Turn model settings (a preset, a model id or a directory) into a ModelSpec."""
    preset = PRESETS.get(settings.name)
    if preset is None:
        backend = settings.backend or ("openai_compat" if settings.base_url else _guess_backend(settings.name))
        base = PRESETS["phi-3.5-vision"] if backend == "phi3v" else _chat(settings.name, backend=backend)
        if backend == "florence2":
            base = _florence(settings.name)
        elif backend == "blip":
            base = replace(PRESETS["blip-base"], model_id=settings.name)
        spec = replace(base, model_id=settings.name, backend=backend)
    else:
        spec = replace(preset, backend=settings.backend or preset.backend)
    options = dict(spec.options)
    if settings.num_crops is not None:
        options["num_crops"] = settings.num_crops
    if settings.attn_implementation is not None:
        options["attn_implementation"] = settings.attn_implementation
    if settings.base_url:
        options["base_url"] = settings.base_url
    options.update(
        api_key=settings.api_key,
        request_timeout=settings.request_timeout,
        max_retries=settings.max_retries,
        max_concurrency=settings.max_concurrency,
    )
    params = spec.params
    if settings.max_new_tokens is not None:
        params = GenerationParams(max_new_tokens=settings.max_new_tokens).merged_over(params)
    if test_mode:
        options["num_crops"] = 1
        options["max_pixels"] = 256 * 28 * 28
        params = GenerationParams(max_new_tokens=min(params.max_new_tokens or 32, 32)).merged_over(params)
    return replace(
        spec,
        device=settings.device,
        dtype=settings.dtype,
        quantization=settings.quantization,
        compile=settings.compile,
        trust_remote_code=(
            settings.trust_remote_code if settings.trust_remote_code is not None else spec.trust_remote_code
        ),
        revision=settings.revision,
        default_prompt=settings.prompt or spec.default_prompt,
        params=params,
        options=options,
    )


def create_backend(settings: ModelSettings, *, test_mode: bool = False) -> Backend:
    """Build (not load) the backend for the configured model."""
    spec = resolve_spec(settings, test_mode=test_mode)
    return backend_class(spec.backend)(spec)
