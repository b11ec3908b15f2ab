"""What the benchmark feeds and measures: synthetic photos, memory peaks, percentiles, the machine."""

from __future__ import annotations

import io
import os
import platform
import random
import resource
import threading
import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from PIL import Image, ImageDraw, ImageFilter


def photo(size: tuple[int, int], seed: int) -> Image.Image:
    """A photo-like RGB image: a sky-to-ground gradient, soft shapes and sensor noise (JPEG-realistic)."""
    rng = random.Random(seed)
    width, height = size
    top = tuple(rng.randrange(60, 200) for _ in range(3))
    bottom = tuple(rng.randrange(20, 160) for _ in range(3))
    column = Image.new("RGB", (1, height))
    for y in range(height):
        t = y / max(1, height - 1)
        column.putpixel((0, y), tuple(int(a + (b - a) * t) for a, b in zip(top, bottom, strict=True)))
    img = column.resize((width, height))
    draw = ImageDraw.Draw(img)
    for _ in range(12):
        x, y = rng.randrange(width), rng.randrange(height)
        r = rng.randrange(max(2, min(size) // 20), max(3, min(size) // 4))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(rng.randrange(256) for _ in range(3)))
    img = img.filter(ImageFilter.GaussianBlur(radius=max(1, min(size) // 200)))
    noise = Image.effect_noise(size, 24).convert("RGB")
    return Image.blend(img, noise, 0.12)


def jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def make_images(count: int, size: tuple[int, int], *, distinct: int = 16) -> list[tuple[str, bytes]]:
    """``count`` named JPEGs cycling through ``distinct`` different photos."""
    pool = [jpeg(photo(size, seed)) for seed in range(min(count, distinct))]
    return [(f"img{i:05d}.jpg", pool[i % len(pool)]) for i in range(count)]


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), linear between ranks; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _rss_bytes() -> int:
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except ImportError:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@dataclass
class MemoryPeak:
    """Samples this process's RSS on a thread (and the CUDA allocator's peak) while a phase runs."""

    interval: float = 0.05
    cuda: bool = False
    peak_rss: int = 0
    peak_gpu: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> MemoryPeak:
        self.peak_rss = _rss_bytes()
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self._thread = threading.Thread(target=self._sample, daemon=True, name="bench-rss")
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_rss = max(self.peak_rss, _rss_bytes())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        self.peak_rss = max(self.peak_rss, _rss_bytes())
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            self.peak_gpu = int(torch.cuda.max_memory_allocated())

    def as_dict(self) -> dict[str, float]:
        out = {"peak_rss_mb": round(self.peak_rss / 2**20, 1)}
        if self.cuda:
            out["peak_gpu_allocated_mb"] = round(self.peak_gpu / 2**20, 1)
        return out


def lifetime_peak_rss_mb() -> float:
    """The process's peak RSS so far (getrusage), in MiB."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gb() -> float | None:
    try:
        with open("/proc/meminfo") as info:
            kb = int(info.readline().split()[1])
        return round(kb / 2**20, 1)
    except (OSError, ValueError, IndexError):
        return None


def machine(device: str) -> dict[str, Any]:
    """What the numbers were measured on."""
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cores": cores,
        "memory_gb": _memory_gb(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {
            p: _version(p)
            for p in ("descry", "torch", "transformers", "tokenizers", "pillow", "fastapi", "uvicorn")
        },
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = {
            "name": props.name,
            "memory_gb": round(props.total_memory / 2**30, 1),
            "cuda": torch.version.cuda,
        }
    return info


def now_stamp() -> tuple[str, str]:
    """(ISO date-time, YYYY-MM-DD) in UTC."""
    moment = time.gmtime()
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", moment), time.strftime("%Y-%m-%d", moment)
