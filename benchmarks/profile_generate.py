"""Where a VLM's batched ``generate`` spends its time: vision tower, prefill, and each decode step.

Run on a GPU machine from a descry checkout, e.g.::

    python benchmarks/profile_generate.py --model qwen2.5-vl-7b --batch 1 --batch 128 --out profile.json

It builds the architecture-exact random model (descry.bench.builders), loads it through descry's
backend, and times (with CUDA synchronisation) the processor, the vision encoder alone,
``generate`` with one new token (vision + prefill) and with N new tokens (min = max).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from descry.backends.base import Prompted
from descry.backends.hf_common import generate_kwargs
from descry.backends.registry import create_backend
from descry.backends.vision_attention import stock_attention
from descry.bench.builders import Scale, build
from descry.bench.phases import fixed_params
from descry.bench.workload import make_images
from descry.config import ImageLimits, ModelSettings
from descry.imaging import decode


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn: Any) -> tuple[float, Any]:
    sync()
    t0 = time.perf_counter()
    out = fn()
    sync()
    return time.perf_counter() - t0, out


def vision_seconds(backend: Any, batch: Any) -> float | None:
    """The image encoder alone, when the model exposes ``get_image_features``."""
    model = backend.model
    if not hasattr(model, "get_image_features") or "image_grid_thw" not in batch.inputs:
        return None
    inputs = batch.inputs.to(backend.device)
    pixels = inputs["pixel_values"].to(backend.dtype)
    with torch.inference_mode():
        seconds, _ = timed(lambda: model.get_image_features(pixels, inputs["image_grid_thw"]))
    return seconds


def stock_vision_seconds(backend: Any, batch: Any) -> float | None:
    """The image encoder as transformers ships it: one attention call per window (descry's fusing taken off)."""
    with stock_attention(backend.model):
        return vision_seconds(backend, batch)


def static_cache_seconds(backend: Any, batch: Any, tokens: int) -> tuple[float, float]:
    """``generate`` with a static KV cache, which transformers compiles (CUDA graphs): first call, then warm."""
    inputs = batch.inputs.to(backend.device)
    inputs["pixel_values"] = inputs["pixel_values"].to(backend.dtype)
    kwargs = {**generate_kwargs(fixed_params(tokens)), "cache_implementation": "static"}
    with torch.inference_mode():
        first, _ = timed(lambda: backend.model.generate(**inputs, **kwargs))
        warm, _ = timed(lambda: backend.model.generate(**inputs, **kwargs))
    return first, warm


def profile(
    key: str,
    sizes: list[int],
    tokens: int,
    image_side: int,
    stock: bool = False,
    static: bool = False,
    scale: Scale = "full",
) -> dict[str, Any]:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = "bfloat16" if device == "cuda" else "float32"
    root = Path(tempfile.mkdtemp(prefix="descry-profile-"))
    built = build(
        key,
        root / key,
        scale=scale,
        device=device,
        dtype=getattr(torch, dtype),
        remote_code=[Path.cwd() / "tests" / "tiny" / "phi3v_remote"],
    )
    settings = ModelSettings(
        name=str(built.path),
        backend=built.backend,
        device=device,
        dtype=dtype,
        trust_remote_code=built.trust_remote_code,
    )
    backend = create_backend(settings)
    backend.load()
    limits = ImageLimits()
    images = [decode(data, name, limits).image for name, data in make_images(max(sizes), (image_side, image_side))]
    out: dict[str, Any] = {"model": built.label, "tokens": tokens, "image_side": image_side, "batches": {}}
    for size in sizes:
        items = [Prompted(image=img, params=fixed_params(tokens)) for img in images[:size]]
        one = [Prompted(image=img, params=fixed_params(1)) for img in images[:size]]
        backend.forward(backend.preprocess(one))  # warm-up
        pre_s, batch = timed(lambda items=items: backend.preprocess(items))
        vision = vision_seconds(backend, batch)
        prepared_one = backend.preprocess(one)
        prefill_s, _ = timed(lambda prepared_one=prepared_one: backend.forward(prepared_one))
        full_s, _ = timed(lambda batch=batch: backend.forward(batch))
        step = (full_s - prefill_s) / max(1, tokens - 1)
        extra: dict[str, Any] = {}
        if stock:
            stock_s = stock_vision_seconds(backend, batch)
            extra["vision_stock_s"] = None if stock_s is None else round(stock_s, 3)
        if static:
            try:
                first, warm = static_cache_seconds(backend, batch, tokens)
                extra.update(static_first_s=round(first, 3), static_generate_s=round(warm, 3))
                extra["static_images_per_second"] = round(size / warm, 2)
            except Exception as exc:  # report, keep the other numbers
                extra["static_error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
        row = {
            "preprocess_s": round(pre_s, 3),
            "vision_s": None if vision is None else round(vision, 3),
            "prefill_incl_vision_s": round(prefill_s, 3),
            "generate_s": round(full_s, 3),
            "decode_step_ms": round(step * 1000, 2),
            "images_per_second": round(size / full_s, 2),
            "peak_gpu_gb": round(torch.cuda.max_memory_allocated() / 2**30, 1) if device == "cuda" else None,
            **extra,
        }
        out["batches"][str(size)] = row
        print(key, size, row, flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=[])
    parser.add_argument("--batch", action="append", type=int, default=[])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--image-side", type=int, default=448)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--scale", choices=["full", "tiny"], default="full", help="tiny: a smoke test on CPU")
    parser.add_argument("--stock-vision", action="store_true", help="also time the unpacked vision attention")
    parser.add_argument("--static-cache", action="store_true", help="also time generate with a static KV cache")
    args = parser.parse_args()
    results = [
        profile(
            m, args.batch or [1, 128], args.tokens, args.image_side, args.stock_vision, args.static_cache, args.scale
        )
        for m in args.model or ["qwen2.5-vl-7b"]
    ]
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
