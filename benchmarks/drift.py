"""How far cheaper arithmetic moves descry's output from fp32: token agreement on the parity checkpoints.

Run from a checkout: ``python benchmarks/drift.py [--images 100] [--out benchmarks/results]``. Each tiny
stock-layout checkpoint of tests/tiny (Florence-2, BLIP, Idefics3/SmolVLM, Qwen2.5-VL) is loaded through
descry's backend in float32, in bfloat16 and with dynamic int8, its weights multiplied by the same power of
two (exact in both dtypes) so the random model's output depends on the image rather than being one
sentence for all. Greedy decoding with the output length pinned; agreement is the share of output
positions where the token equals fp32's, ``exact`` the share of outputs equal to fp32's in full,
``prefix`` the mean number of leading tokens before the first difference and ``first_token`` the share
of outputs whose first token is fp32's (one step, no earlier difference to follow).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SCALE = {"florence2": 16.0, "blip": 64.0}  # powers of two: scaling is exact in fp32 and bf16 alike
DEFAULT_SCALE = 4.0
TOKENS = 16


def families() -> dict[str, tuple[Callable[[Path], Path], list[dict[str, Any]]]]:
    """Each checkpoint's builder and the prompts/tasks every image is asked with."""
    from tests.tiny.blip import build_tiny_blip
    from tests.tiny.florence2 import build_tiny_florence2
    from tests.tiny.hf_vlm import build_tiny_idefics3, build_tiny_qwen2_5_vl

    return {
        "florence2": (build_tiny_florence2, [{"task": t} for t in ("<CAPTION>", "<MORE_DETAILED_CAPTION>", "<OCR>")]),
        "blip": (build_tiny_blip, [{}, {"prompt": "a picture of"}]),
        "idefics3 (SmolVLM)": (build_tiny_idefics3, [{"prompt": "Describe this image."}, {"prompt": "What is shown?"}]),
        "qwen2.5-vl": (build_tiny_qwen2_5_vl, [{"prompt": "Describe this image."}, {"prompt": "What is shown?"}]),
    }


def load(path: Path, variant: str, scale: float) -> Any:
    """descry's backend for the checkpoint, weights scaled, in the variant's arithmetic."""
    import torch

    from descry.backends import hf_common, registry
    from descry.config import ModelSettings

    dtype = "bfloat16" if variant == "bf16" else "float32"
    backend = registry.create_backend(ModelSettings(name=str(path), device="cpu", dtype=dtype))  # type: ignore[arg-type]
    backend.load()
    with torch.no_grad():
        for param in backend.model.parameters():  # type: ignore[attr-defined]
            param.mul_(scale)
    if variant == "int8":
        backend.model = hf_common.quantize_cpu_int8(backend.model)  # type: ignore[attr-defined]
    return backend


def tokens(backend: Any, images: list[Any], ask: dict[str, Any]) -> list[list[int]]:
    """The pinned-length greedy output tokens of every image, in batches of 8."""
    from descry.backends.base import Prompted
    from descry.schemas import GenerationParams

    params = GenerationParams(max_new_tokens=TOKENS, min_new_tokens=TOKENS, num_beams=1, temperature=0.0)
    out: list[list[int]] = []
    for start in range(0, len(images), 8):
        items = [Prompted(image=img, params=params, **ask) for img in images[start : start + 8]]
        raw = backend.forward(backend.preprocess(items))
        for tensor in raw if isinstance(raw, list) else [raw]:
            out.extend(row[-TOKENS:] for row in tensor.tolist())
    return out


def compare(ref: list[list[int]], other: list[list[int]]) -> dict[str, float]:
    same = sum(a == b for r, o in zip(ref, other, strict=True) for a, b in zip(r, o, strict=True))
    pairs = list(zip(ref, other, strict=True))
    prefix = [next((i for i, (a, b) in enumerate(zip(r, o, strict=True)) if a != b), len(r)) for r, o in pairs]
    return {
        "pairs": len(ref),
        "agreement": round(same / max(1, sum(len(r) for r in ref)), 4),
        "exact": round(sum(r == o for r, o in zip(ref, other, strict=True)) / max(1, len(ref)), 4),
        "prefix": round(sum(prefix) / max(1, len(prefix)), 2),
        "first_token": round(sum(p > 0 for p in prefix) / max(1, len(prefix)), 4),
    }


def measure(name: str, path: Path, asks: list[dict[str, Any]], images: list[Any]) -> dict[str, Any]:
    outputs: dict[str, list[list[int]]] = {}
    for variant in ("fp32", "bf16", "int8"):
        backend = load(path, variant, SCALE.get(name, DEFAULT_SCALE))
        try:
            outputs[variant] = [t for ask in asks for t in tokens(backend, images, ask)]
        finally:
            backend.close()
    ref = outputs["fp32"]
    return {
        "distinct_fp32_outputs": len({tuple(t) for t in ref}),
        **{variant: compare(ref, outputs[variant]) for variant in ("bf16", "int8")},
    }


def main() -> None:
    from descry.bench.workload import now_stamp, photo

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    images = [photo((96 + 8 * (i % 5), 72 + 6 * (i % 7)), 500 + i) for i in range(args.images)]
    started, day = now_stamp()
    scales = {name: SCALE.get(name, DEFAULT_SCALE) for name in families()}
    result: dict[str, Any] = {"date": started, "scale": scales, "tokens": TOKENS, "images": args.images, "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (build, asks) in families().items():
            t0 = time.perf_counter()
            path = build(Path(tmp) / name.split()[0])
            result["models"][name] = measure(name, path, asks, images)
            print(name, json.dumps(result["models"][name]), f"{time.perf_counter() - t0:.0f}s", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"drift-{day}.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
