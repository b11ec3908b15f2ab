"""Where a VLM's batched ``generate`` spends its time: vision tower, prefill, and each decode step.

Run on a GPU machine from a descry checkout, e.g.::

    python benchmarks/profile_generate.py --model qwen2.5-vl-7b --batch 1 --batch 128 --out profile.json

It builds the architecture-exact random model (descry.bench.models), loads it through descry's
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
from descry.backends.registry import create_backend
from descry.bench.models import build
from descry.bench.phases import fixed_params
from descry.bench.workload import make_images
from descry.config import ImageLimits, ModelSettings
from descry.imaging import decode


def timed(fn: Any) -> tuple[float, Any]:
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    torch.cuda.synchronize()
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


def profile(key: str, sizes: list[int], tokens: int, image_side: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="descry-profile-"))
    built = build(
        key,
        root / key,
        scale="full",
        device="cuda",
        dtype=torch.bfloat16,
        remote_code=[Path.cwd() / "tests" / "tiny" / "phi3v_remote"],
    )
    settings = ModelSettings(
        name=str(built.path),
        backend=built.backend,
        device="cuda",
        dtype="bfloat16",
        trust_remote_code=built.trust_remote_code,
    )
    backend = create_backend(settings)
    backend.load()
    limits = ImageLimits()
    images = [
        decode(data, name, limits).image for name, data in make_images(max(sizes), (image_side, image_side))
    ]
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
        row = {
            "preprocess_s": round(pre_s, 3),
            "vision_s": None if vision is None else round(vision, 3),
            "prefill_incl_vision_s": round(prefill_s, 3),
            "generate_s": round(full_s, 3),
            "decode_step_ms": round(step * 1000, 2),
            "images_per_second": round(size / full_s, 2),
            "peak_gpu_gb": round(torch.cuda.max_memory_allocated() / 2**30, 1),
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
    args = parser.parse_args()
    results = [
        profile(m, args.batch or [1, 128], args.tokens, args.image_side)
        for m in args.model or ["qwen2.5-vl-7b"]
    ]
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
