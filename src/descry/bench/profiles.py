"""Benchmark profiles: which models, how many images of what size, and the targets to report against."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from descry.bench.builders import Scale
from descry.errors import ConfigError


@dataclass(frozen=True)
class ModelCase:
    """One model to benchmark and how the engine runs it."""

    key: str
    max_new_tokens: int
    batch_size: int
    baseline_images: int
    engine_images: int
    http_requests_per_client: int = 2
    sweep: tuple[int, ...] = ()  # extra engine batch sizes to measure (batches of 4 each)
    http_wait_variants: tuple[float, ...] = ()  # batcher max waits (ms) to retry the top client counts with
    # CPU only: the engine again with cheaper arithmetic, as ENGINE_VARIANTS names them (not fp32 ratios)
    cpu_variants: tuple[str, ...] = ()
    build: str = ""  # the builders' model key when it is not ``key`` (one model, several cases)
    task: str | None = None  # a task token (Florence-2) asked on every path
    num_beams: int = 1  # beams on every path: the preset's (Florence-2: 3), as `descry caption` runs it
    engine_fp32: bool = True  # also run the engine in the profile's dtype (fp32), not only the variants

    @property
    def model_key(self) -> str:
        return self.build or self.key


# variant name -> the model settings it changes; results land under "engine_<name>"
ENGINE_VARIANTS: dict[str, dict[str, Any]] = {
    "default": {"dtype": "auto"},  # `descry caption` with no flags: descry's defaults, dtype auto
    "int8": {"quantization": "8bit"},  # torch's dynamic int8 of the linear layers
    "bf16": {"dtype": "bfloat16"},  # fast on CPUs with AVX512-BF16 or AMX, emulated (slow) elsewhere
}


@dataclass(frozen=True)
class Target:
    """A number the issue asks for; ``metric`` names a key of the model's summary (or of the decode bench)."""

    label: str
    model: str | None
    metric: str
    minimum: float


@dataclass(frozen=True)
class Profile:
    name: str
    scale: Scale
    device: str
    dtype: str
    image_size: tuple[int, int]
    models: tuple[ModelCase, ...]
    http_concurrency: tuple[int, ...] = (1, 8, 32)
    decode_images: int = 4
    decode_size: tuple[int, int] = (4000, 3000)
    decode_target_pixels: int = 384 * 384
    max_wait_ms: float = 10.0
    decode_threads: int = 4
    targets: tuple[Target, ...] = field(default_factory=tuple)
    # `descry caption` as a process on this many JPEGs of ``process_size`` (0: not measured)
    process_images: int = 0
    process_model: str = ""
    process_size: tuple[int, int] = (4000, 3000)


DECODE_TARGET = Target("decode: draft path >= 3x full decode + resize", None, "decode.speedup", 3.0)

PROFILES: dict[str, Profile] = {
    "tiny": Profile(
        name="tiny",
        scale="tiny",
        device="cpu",
        dtype="float32",
        image_size=(96, 72),
        models=(
            ModelCase(
                "blip-base",
                max_new_tokens=8,
                batch_size=4,
                baseline_images=4,
                engine_images=8,
                http_requests_per_client=1,
                cpu_variants=("int8", "bf16"),
            ),
            ModelCase(
                "florence-2-base",
                max_new_tokens=6,
                batch_size=4,
                baseline_images=2,
                engine_images=4,
                http_requests_per_client=1,
                task="<CAPTION>",
                num_beams=3,
                cpu_variants=("default",),
            ),
        ),
        http_concurrency=(1, 4),
        decode_images=1,
        decode_size=(1600, 1200),
        decode_target_pixels=128 * 128,
        max_wait_ms=5.0,
        decode_threads=2,
        process_model="florence-2-base",
        process_size=(320, 240),
    ),
    "cpu": Profile(
        name="cpu",
        scale="full",
        device="cpu",
        dtype="float32",
        image_size=(640, 480),
        models=(
            ModelCase(
                "florence-2-base",
                max_new_tokens=64,
                batch_size=8,
                baseline_images=3,
                engine_images=8,
                task="<CAPTION>",
                num_beams=3,
                cpu_variants=("default", "bf16", "int8"),
            ),
            ModelCase(
                "blip-base",
                max_new_tokens=24,
                batch_size=8,
                baseline_images=4,
                engine_images=8,
                http_requests_per_client=3,
                cpu_variants=("default", "bf16", "int8"),
            ),
            ModelCase(
                "florence-2-base-detailed",
                build="florence-2-base",
                max_new_tokens=64,
                batch_size=8,
                baseline_images=1,
                engine_images=4,
                task="<MORE_DETAILED_CAPTION>",
                num_beams=3,
                cpu_variants=("default",),
                engine_fp32=False,
            ),
            ModelCase(
                "smolvlm-256m",
                max_new_tokens=32,
                batch_size=8,
                baseline_images=1,
                engine_images=2,
                cpu_variants=("default",),
                engine_fp32=False,
            ),
        ),
        http_concurrency=(1, 8),
        decode_images=4,
        decode_target_pixels=384 * 384,
        max_wait_ms=20.0,
        decode_threads=2,
        targets=(
            Target(
                "CPU Florence-2-base: default path >= 3x fp32 baseline",
                "florence-2-base",
                "engine_default.speedup",
                3.0,
            ),
            Target("CPU BLIP-base: default path >= 3x fp32 baseline", "blip-base", "engine_default.speedup", 3.0),
            Target("CPU BLIP-base: engine (fp32) >= 2.5x baseline", "blip-base", "engine.speedup", 2.5),
            DECODE_TARGET,
        ),
        process_images=32,
        process_model="florence-2-base",
    ),
    "gpu": Profile(
        name="gpu",
        scale="full",
        device="cuda",
        dtype="bfloat16",
        image_size=(448, 448),
        models=(
            ModelCase(
                "qwen2.5-vl-7b",
                max_new_tokens=64,
                batch_size=256,
                baseline_images=8,
                engine_images=1024,
                http_requests_per_client=4,
                sweep=(64, 128),
                http_wait_variants=(100.0,),
            ),
            ModelCase(
                "phi-3.5-vision",
                max_new_tokens=64,
                batch_size=64,
                baseline_images=6,
                engine_images=256,
                http_requests_per_client=2,
            ),
        ),
        http_concurrency=(1, 8, 32),
        decode_images=8,
        decode_target_pixels=448 * 448,
        max_wait_ms=10.0,
        decode_threads=8,
        targets=(
            Target("GPU Qwen2.5-VL-7B: engine >= 15x baseline", "qwen2.5-vl-7b", "engine.speedup", 15.0),
            Target(
                "GPU Qwen2.5-VL-7B: engine >= 50 img/s", "qwen2.5-vl-7b", "engine.images_per_second", 50.0
            ),
            DECODE_TARGET,
        ),
    ),
}


def get_profile(
    name: str,
    *,
    images: int | None = None,
    models: list[str] | None = None,
    batch_size: int | None = None,
    tokens: int | None = None,
    baseline_images: int | None = None,
    process_images: int | None = None,
) -> Profile:
    """A profile by name, optionally with other image counts, output length, models or batch size."""
    try:
        profile = PROFILES[name]
    except KeyError:
        raise ConfigError(
            f"no benchmark profile {name!r}", hint="use one of " + ", ".join(PROFILES)
        ) from None
    cases = profile.models
    if models:
        unknown = sorted(set(models) - {c.key for c in cases})
        if unknown:
            known = ", ".join(c.key for c in cases)
            raise ConfigError(
                f"profile {name} has no model {', '.join(unknown)}", hint=f"choose from {known}"
            )
        cases = tuple(c for c in cases if c.key in models)
    if images is not None:
        cases = tuple(
            replace(c, engine_images=images, baseline_images=min(c.baseline_images, images)) for c in cases
        )
    if batch_size is not None:
        cases = tuple(replace(c, batch_size=batch_size) for c in cases)
    if tokens is not None:
        cases = tuple(replace(c, max_new_tokens=tokens) for c in cases)
    if baseline_images is not None:
        cases = tuple(replace(c, baseline_images=baseline_images) for c in cases)
    if process_images is not None:
        profile = replace(profile, process_images=process_images)
    return replace(profile, models=cases)
