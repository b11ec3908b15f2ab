"""Backends, their presets and model types: aggregated from the ``descry.backends`` entry points.

Every backend, built-in or plugin, registers through the same entry-point group (pyproject.toml
for the built-ins) and declares its family on its class: ``presets``, the config.json
``model_types`` it serves and its typed ``Options``. The registry only aggregates them, once per
process (``catalog``), refuses two backends claiming the same preset or model type, resolves a
model name to a spec, and validates the options against the chosen backend.
"""

from __future__ import annotations

import difflib
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

from descry.backends.base import BRIEF, DETAILED, Backend, ModelSpec, Preset
from descry.config import ModelSettings
from descry.errors import ConfigError
from descry.schemas import GenerationParams

__all__ = [
    "BRIEF",
    "DETAILED",
    "ENTRY_POINT_GROUP",
    "Catalog",
    "backend_class",
    "catalog",
    "closest_preset",
    "create_backend",
    "guess_backend",
    "preset_of",
    "presets",
    "resolve_spec",
]

log = logging.getLogger("descry.backends")

ENTRY_POINT_GROUP = "descry.backends"
FALLBACK_BACKEND = "hf_vlm"
REMOTE_BACKEND = "openai_compat"
TEST_MODE_OPTIONS: dict[str, Any] = {"num_crops": 1, "max_pixels": 256 * 28 * 28}


@dataclass(frozen=True)
class Catalog:
    """What the installed backends declare, aggregated: backends by name, presets, model types."""

    backends: Mapping[str, type[Backend]]
    presets: Mapping[str, Preset]
    model_types: Mapping[str, str]
    broken: Mapping[str, str]

    def backend(self, name: str) -> type[Backend]:
        """The backend registered under ``name``; a ConfigError lists the available ones."""
        if name in self.backends:
            return self.backends[name]
        if name in self.broken:
            raise ConfigError(
                f"backend {name!r} is installed but could not be loaded: {self.broken[name]}",
                hint="reinstall or fix the package that provides it",
            )
        names = ", ".join(sorted(self.backends))
        raise ConfigError(f"unknown backend {name!r}", hint=f"available backends: {names}")


def _load(ep: EntryPoint) -> type[Backend]:
    cls = ep.load()
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise TypeError(f"{ep.value} is not a descry Backend class")
    return cls


def _loaded_backends(eps: Iterable[EntryPoint]) -> tuple[dict[str, type[Backend]], dict[str, str]]:
    """Each entry point loaded once; two different classes under one name are an error naming both."""
    backends: dict[str, type[Backend]] = {}
    values: dict[str, str] = {}
    broken: dict[str, str] = {}
    for ep in eps:
        if ep.name in values:
            if ep.value != values[ep.name]:
                raise ConfigError(
                    f"two packages register backend {ep.name!r}: {values[ep.name]} and {ep.value}",
                    hint="uninstall one of them",
                )
            continue
        values[ep.name] = ep.value
        try:
            backends[ep.name] = _load(ep)
        except Exception as exc:  # a broken plugin must not take the other backends down
            log.warning("backend %s (%s) could not be loaded: %s", ep.name, ep.value, exc)
            broken[ep.name] = f"{type(exc).__name__}: {exc}"
    return backends, broken


def _claim(owners: dict[str, str], key: str, backend: str, what: str) -> None:
    if key in owners and owners[key] != backend:
        raise ConfigError(
            f"{what} {key!r} is claimed by two backends: {owners[key]} and {backend}",
            hint="uninstall one of the plugins, or ask its author to rename the " + what,
        )
    owners[key] = backend


def aggregate(backends: Mapping[str, type[Backend]], broken: Mapping[str, str] | None = None) -> Catalog:
    """Collect the presets and model types the backends declare; a name claimed twice is a ConfigError."""
    preset_owner: dict[str, str] = {}
    type_owner: dict[str, str] = {}
    found: dict[str, Preset] = {}
    for name, cls in backends.items():
        for preset_name, preset in cls.presets.items():
            _claim(preset_owner, preset_name, name, "preset")
            found[preset_name] = replace(preset, spec=replace(preset.spec, backend=name))
        for model_type in cls.model_types:
            _claim(type_owner, model_type, name, "model type")
    return Catalog(dict(backends), found, type_owner, dict(broken or {}))


@cache
def catalog() -> Catalog:
    """The installed backends and what they declare, loaded from the entry points once per process."""
    return aggregate(*_loaded_backends(entry_points(group=ENTRY_POINT_GROUP)))


def presets() -> Mapping[str, Preset]:
    """Every preset of every installed backend, by name (what ``descry models`` lists)."""
    return catalog().presets


def backend_class(name: str) -> type[Backend]:
    """The backend class registered under ``name``."""
    return catalog().backend(name)


def closest_preset(name: str) -> str | None:
    """The preset a mistyped name most likely meant (``florence2-base``: florence-2-base), or None."""
    tail = name.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1].lower()
    matches = difflib.get_close_matches(tail, list(presets()), n=1, cutoff=0.6)
    return matches[0] if matches else None


def preset_of(model_id: str) -> str | None:
    """The preset that resolves to this model id, if one does."""
    return next((name for name, preset in presets().items() if preset.spec.model_id == model_id), None)


def guess_backend(model: str) -> str:
    """Pick a backend for a model id or directory that is not a preset: config.json's model_type, else its name."""
    cat = catalog()
    config = Path(model) / "config.json"
    if config.is_file():
        model_type = json.loads(config.read_text()).get("model_type", "")
        return cat.model_types.get(model_type, FALLBACK_BACKEND)
    claimants = sorted(name for name, cls in cat.backends.items() if cls.claims_name(model))
    if len(claimants) > 1:
        raise ConfigError(
            f"model {model!r} could belong to several backends: {', '.join(claimants)}",
            hint="choose one with --backend (DESCRY_MODEL__BACKEND)",
        )
    return claimants[0] if claimants else FALLBACK_BACKEND


_guess_backend = guess_backend


def _base_spec(settings: ModelSettings, cat: Catalog) -> tuple[ModelSpec, dict[str, Any]]:
    """The spec before settings apply, and the options it brings that the chosen backend must accept."""
    preset = cat.presets.get(settings.name)
    if preset is None:
        backend = settings.backend or (REMOTE_BACKEND if settings.base_url else guess_backend(settings.name))
        spec = cat.backend(backend).spec_for(settings.name, backend)
        return spec, dict(spec.options)
    backend = settings.backend or preset.spec.backend
    spec = replace(preset.spec, backend=backend)
    if backend == preset.spec.backend:
        return spec, dict(spec.options)
    known = cat.backend(backend).Options.model_fields
    return spec, {k: v for k, v in spec.options.items() if k in known}


def _options(settings: ModelSettings, base: dict[str, Any], cls: type[Backend], test_mode: bool) -> dict[str, Any]:
    """Preset options, then the dedicated settings the backend takes, then ``options``; validated."""
    known = cls.Options.model_fields
    dedicated = {
        "num_crops": settings.num_crops,
        "attn_implementation": settings.attn_implementation,
        "base_url": settings.base_url or None,
        "api_key": settings.api_key,
        "request_timeout": settings.request_timeout,
        "max_retries": settings.max_retries,
        "max_concurrency": settings.max_concurrency,
    }
    options = {**base, **{k: v for k, v in dedicated.items() if k in known and v is not None}}
    options.update(settings.options)
    if test_mode:
        options.update({k: v for k, v in TEST_MODE_OPTIONS.items() if k in known})
    return cls.check_options(options)


def resolve_spec(settings: ModelSettings, *, test_mode: bool = False) -> ModelSpec:
    """Turn model settings (a preset, a model id or a directory) into a ModelSpec with validated options."""
    cat = catalog()
    spec, base_options = _base_spec(settings, cat)
    cls = cat.backend(spec.backend)
    options = _options(settings, base_options, cls, test_mode)
    params = spec.params
    if settings.max_new_tokens is not None:
        params = GenerationParams(max_new_tokens=settings.max_new_tokens).merged_over(params)
    if test_mode:
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


def __getattr__(name: str) -> Any:
    """``PRESETS``, ``PRESET_NOTES`` and ``MODEL_TYPE_BACKENDS`` as before, computed from the catalog."""
    if name == "PRESETS":
        return {preset_name: preset.spec for preset_name, preset in presets().items()}
    if name == "PRESET_NOTES":
        return {preset_name: preset.note for preset_name, preset in presets().items()}
    if name == "MODEL_TYPE_BACKENDS":
        return dict(catalog().model_types)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
