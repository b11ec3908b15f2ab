"""Which device and arithmetic a local model runs in, said in one line (``descry caption``'s start line)."""

from __future__ import annotations

from typing import Any

from descry.backends.base import ModelSpec
from descry.config import Settings
from descry.cpu_features import cpu_precision
from descry.errors import DescryError


def dtype_name(dtype: Any) -> str | None:
    """``torch.bfloat16`` as ``bfloat16``; None when there is none (remote backends)."""
    return None if dtype is None else str(dtype).removeprefix("torch.")


def precision_note(spec: ModelSpec) -> str:
    """'cpu, bfloat16 (auto: the CPU has AVX512-BF16)' for a transformers model's spec, before it loads."""
    from descry.backends import hf_common

    device = hf_common.resolve_device(spec.device)
    if device == "cpu":
        chosen = cpu_precision(spec.dtype, quantization=spec.quantization)
        how = "" if spec.dtype != "auto" else f" (auto: {chosen.reason})"
        return f"{device}, {chosen.dtype}{how}"
    dtype = dtype_name(hf_common.resolve_dtype(spec.dtype, device, spec.quantization))
    return f"{device}, {dtype}{' (auto)' if spec.dtype == 'auto' else ''}"


def start_line(settings: Settings) -> str | None:
    """'model NAME on cpu, bfloat16 (auto: ...)' for a local transformers model; None for remote ones or
    when the settings do not resolve (the run itself then reports why)."""
    from descry.backends import hf_common
    from descry.backends.registry import backend_class, resolve_spec

    try:
        spec = resolve_spec(settings.model, test_mode=settings.test_mode)
        if not issubclass(backend_class(spec.backend), hf_common.TransformersBackend):
            return None
        return f"model {spec.model_id} on {precision_note(spec)}"
    except DescryError:
        return None
