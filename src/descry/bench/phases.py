"""The measured phases: the decode benchmark, the one-image-at-a-time baseline and descry's engine."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from descry.backends.base import Backend, Prompted
from descry.bench.workload import MemoryPeak, jpeg, percentile, photo
from descry.config import ImageLimits
from descry.engine.pipeline import Engine
from descry.imaging import decode, decode_full
from descry.schemas import GenerationParams

PROMPT = "Describe this image in one sentence."
PHI_PROMPT = "<|user|>\n<|image_1|>\n{text}<|end|>\n<|assistant|>\n"
STAGES = ("decode", "preprocess", "generate", "postprocess")


@dataclass
class Sample:
    """One image's latency and its share of each stage, in seconds."""

    latency: float
    stages: dict[str, float]
    output_tokens: int
    batch_size: int = 1


@dataclass
class PhaseResult:
    name: str
    seconds: float
    samples: list[Sample]
    memory: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        n = len(self.samples)
        latencies = [s.latency for s in self.samples]
        stages = {k: sum(s.stages.get(k, 0.0) for s in self.samples) / max(1, n) for k in STAGES}
        tokens = [s.output_tokens for s in self.samples]
        batches = sum(1 / s.batch_size for s in self.samples)
        out: dict[str, Any] = {
            "images": n,
            "seconds": round(self.seconds, 3),
            "images_per_second": round(n / self.seconds, 3) if self.seconds > 0 else 0.0,
            "latency_p50_s": round(percentile(latencies, 50), 4),
            "latency_p95_s": round(percentile(latencies, 95), 4),
            "stage_s_per_image": {k: round(v, 5) for k, v in stages.items()},
            "device_busy": round(stages["generate"] * n / self.seconds, 3) if self.seconds > 0 else 0.0,
            "mean_batch_size": round(n / batches, 2) if batches else 0.0,
            "output_tokens": {"min": min(tokens, default=0), "max": max(tokens, default=0)},
            **self.memory,
            **self.extra,
        }
        return out


def fixed_params(max_new_tokens: int, num_beams: int = 1) -> GenerationParams:
    """Greedy (or the preset's beam search) with the output length pinned, so every path does the same work."""
    return GenerationParams(
        max_new_tokens=max_new_tokens,
        min_new_tokens=max_new_tokens,
        num_beams=num_beams,
        temperature=0.0,
        repetition_penalty=1.0,
    )


# ---------------------------------------------------------------- decode


def decode_bench(count: int, size: tuple[int, int], target_pixels: int) -> dict[str, Any]:
    """Full decode + resize (``imaging.decode_full``) against the JPEG draft path (``imaging.decode``)."""
    limits = ImageLimits()
    files = [jpeg(photo(size, 1000 + i), quality=92) for i in range(count)]
    decode(files[0], "warmup.jpg", limits, target_pixels)
    timings: dict[str, list[float]] = {"full": [], "draft": []}
    for i, data in enumerate(files):
        for name, fn in (("full", decode_full), ("draft", decode)):
            t0 = time.perf_counter()
            fn(data, f"photo{i}.jpg", limits, target_pixels)
            timings[name].append(time.perf_counter() - t0)
    full = sum(timings["full"]) / count
    draft = sum(timings["draft"]) / count
    return {
        "images": count,
        "source": f"{size[0]}x{size[1]} JPEG ({size[0] * size[1] / 1e6:.0f} MP)",
        "mean_file_mb": round(sum(len(f) for f in files) / count / 2**20, 2),
        "target_pixels": target_pixels,
        "full_ms": round(full * 1000, 2),
        "draft_ms": round(draft * 1000, 2),
        "speedup": round(full / draft, 2) if draft else 0.0,
    }


# ---------------------------------------------------------------- baseline


def _direct(
    backend: Backend, image: Image.Image, params: GenerationParams, task: str | None = None
) -> tuple[Any, Callable[[Any], Any], Any]:
    """The replaced projects' per-image call: (processor output, generate, text decoder) via the HF API."""
    import torch

    model, processor, device = backend.model, backend.processor, backend.device  # type: ignore[attr-defined]
    dtype = backend.dtype  # type: ignore[attr-defined]
    kwargs: dict[str, Any] = {
        "max_new_tokens": params.max_new_tokens,
        "min_new_tokens": params.max_new_tokens,
        "num_beams": params.num_beams or 1,
        "do_sample": False,
    }
    if backend.name == "florence2":  # the model card's code: the task token, generate, post_process_generation
        inputs = processor(text=task or "<CAPTION>", images=image, return_tensors="pt").to(device)
        inputs["pixel_values"] = inputs["pixel_values"].to(dtype)

        def text(out: Any) -> Any:
            raw = processor.batch_decode(out, skip_special_tokens=False)[0]
            return processor.post_process_generation(raw, task=task or "<CAPTION>", image_size=image.size)
    elif backend.name == "blip":
        inputs = processor(images=image, return_tensors="pt").to(device)
        inputs["pixel_values"] = inputs["pixel_values"].to(dtype)

        def text(out: Any) -> Any:
            return processor.decode(out[0], skip_special_tokens=True)
    elif backend.name == "phi3v":
        from descry.backends import phi3v_compat

        inputs = processor(PHI_PROMPT.format(text=PROMPT), [image], return_tensors="pt").to(device)
        inputs["pixel_values"] = inputs["pixel_values"].to(dtype)
        kwargs[phi3v_compat.generate_cache_kwarg()] = phi3v_compat.new_cache()
        kwargs["pad_token_id"] = processor.tokenizer.pad_token_id
        width = int(inputs["input_ids"].shape[1])

        def text(out: Any) -> Any:
            return processor.tokenizer.decode(out[0, width:], skip_special_tokens=True)
    else:
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT}]}]
        prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        inputs = processor(text=[prompt], images=[image], return_tensors="pt").to(device)
        width = int(inputs["input_ids"].shape[1])

        def text(out: Any) -> Any:
            return processor.batch_decode(out[:, width:], skip_special_tokens=True)[0]

    def generate(prepared: Any) -> Any:
        with torch.inference_mode():
            return model.generate(**prepared, **kwargs)

    return inputs, generate, text


def _baseline_one(backend: Backend, data: bytes, params: GenerationParams, task: str | None) -> Sample:
    t0 = time.perf_counter()
    image = Image.open(io.BytesIO(data)).convert("RGB")
    t1 = time.perf_counter()
    inputs, generate, text = _direct(backend, image, params, task)
    t2 = time.perf_counter()
    out = generate(inputs)
    t3 = time.perf_counter()
    text(out.cpu())
    t4 = time.perf_counter()
    decoder_only = "input_ids" in inputs and backend.name != "florence2"
    new_tokens = int(out.shape[1]) - (int(inputs["input_ids"].shape[1]) if decoder_only else 1)
    stages = {"decode": t1 - t0, "preprocess": t2 - t1, "generate": t3 - t2, "postprocess": t4 - t3}
    return Sample(latency=t4 - t0, stages=stages, output_tokens=new_tokens)


def baseline(
    backend: Backend,
    images: list[tuple[str, bytes]],
    params: GenerationParams,
    *,
    cuda: bool,
    name: str = "baseline",
    task: str | None = None,
) -> PhaseResult:
    """One ``generate`` per image, in sequence: open with PIL, run the processor, generate, decode."""
    _baseline_one(backend, images[0][1], params, task)
    samples = []
    with MemoryPeak(cuda=cuda) as memory:
        t0 = time.perf_counter()
        for _name, data in images:
            samples.append(_baseline_one(backend, data, params, task))
        seconds = time.perf_counter() - t0
    return PhaseResult(name, seconds, samples, memory.as_dict())


# ---------------------------------------------------------------- engine


async def engine_run(
    engine: Engine, images: list[tuple[str, bytes]], params: GenerationParams, concurrency: int, task: str | None = None
) -> tuple[float, list[Sample]]:
    """Submit every image at once (at most ``concurrency`` in flight) through decode and the batcher."""
    limit = asyncio.Semaphore(concurrency)

    async def one(name: str, data: bytes) -> Sample:
        async with limit:
            t0 = time.perf_counter()
            decoded = await asyncio.to_thread(decode, data, name, engine.settings.limits, engine.target_pixels)
            t1 = time.perf_counter()
            gen = await engine.generate(Prompted(image=decoded.image, params=params, task=task))
            t2 = time.perf_counter()
        size = int(gen.timings.get("batch_size", 1))
        stages = {k: gen.timings.get(f"{k}_s", 0.0) / size for k in ("preprocess", "generate", "postprocess")}
        stages["decode"] = t1 - t0
        return Sample(latency=t2 - t0, stages=stages, output_tokens=gen.output_tokens, batch_size=size)

    t0 = time.perf_counter()
    samples = await asyncio.gather(*(one(n, d) for n, d in images))
    return time.perf_counter() - t0, list(samples)


async def engine_phase(
    engine: Engine,
    images: list[tuple[str, bytes]],
    params: GenerationParams,
    *,
    warmup: int,
    cuda: bool,
    task: str | None = None,
) -> PhaseResult:
    """The engine in-process, after a warm-up pass of ``warmup`` images."""
    settings = engine.settings
    concurrency = engine.batch_size * (settings.batching.inflight_batches + 1)
    if warmup:
        await engine_run(engine, images[:warmup], params, concurrency, task)
    with MemoryPeak(cuda=cuda) as memory:
        seconds, samples = await engine_run(engine, images, params, concurrency, task)
    extra = {"concurrency": concurrency, "max_batch_size": settings.model.batch_size}
    return PhaseResult("engine", seconds, samples, memory.as_dict(), extra)


async def batch_sweep(
    engine: Engine,
    images: list[tuple[str, bytes]],
    params: GenerationParams,
    sizes: tuple[int, ...],
    *,
    cuda: bool,
) -> dict[str, Any]:
    """Engine throughput at other maximum batch sizes (four full batches each); restores the configured."""
    batcher = engine.batcher
    configured, queue = batcher.max_batch_size, batcher.max_queue
    inflight = engine.settings.batching.inflight_batches + 1
    out: dict[str, Any] = {}
    try:
        for size in sizes:
            batcher.max_batch_size = batcher.current_batch_size = size
            batcher.max_queue = max(queue, size * inflight)
            chosen = [images[i % len(images)] for i in range(size * 4)]
            await engine_run(engine, chosen[:size], params, size * inflight)
            with MemoryPeak(cuda=cuda) as memory:
                seconds, samples = await engine_run(engine, chosen, params, size * inflight)
            summary = PhaseResult(f"sweep-{size}", seconds, samples, memory.as_dict()).summary()
            out[str(size)] = {
                k: summary[k]
                for k in (
                    "images",
                    "images_per_second",
                    "latency_p50_s",
                    "device_busy",
                    "mean_batch_size",
                    *memory.as_dict(),
                )
            }
    finally:
        batcher.max_batch_size = batcher.current_batch_size = configured
        batcher.max_queue = queue
    return out
