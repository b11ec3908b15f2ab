"""`descry caption` as a user runs it: a separate process on a folder of camera-sized JPEGs, timed from
the command's start (Python start-up, imports and the model load included) to its exit."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from PIL import ImageDraw

from descry.bench.workload import jpeg, photo


def camera_folder(folder: Path, count: int, size: tuple[int, int], *, distinct: int = 4) -> int:
    """``count`` different JPEGs of ``size`` (a few photos, each copy marked so no two files are equal);
    returns the mean file size in bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    bases = [photo(size, 2000 + i) for i in range(min(count, distinct))]
    total = 0
    rng = random.Random(7)
    for i in range(count):
        img = bases[i % len(bases)].copy()
        x, y = rng.randrange(size[0] - 64), rng.randrange(size[1] - 64)
        ImageDraw.Draw(img).rectangle((x, y, x + 63, y + 63), fill=(i * 37 % 256, i * 91 % 256, i * 13 % 256))
        data = jpeg(img, quality=92)
        (folder / f"IMG_{i:04d}.jpg").write_bytes(data)
        total += len(data)
    return total // max(1, count)


def descry_command() -> list[str]:  # replaced in tests by a stand-in command
    """The installed ``descry`` script next to this Python, else ``python -m descry.cli``."""
    script = Path(sys.executable).with_name("descry")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "descry.cli"]


def _high_water_kb(pid: int) -> int:
    """The process's peak RSS since its exec (VmHWM). ``ru_maxrss`` is not used: it keeps the peak of the
    forked copy of this (benchmark-sized) process from before the exec."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def run_caption(folder: Path, model: Path, workdir: Path, count: int) -> dict[str, Any]:
    """Run ``descry caption FOLDER --model MODEL`` (the default txt sidecars) and time it, the first
    sidecar's appearance and the child's peak RSS."""
    # One attempt per image: random weights write noise, which the caption agent's checks (words, language)
    # would retry with up to 1024 tokens; a real model's caption passes them, so this is the user's work
    env = {**os.environ, "XDG_DATA_HOME": str(workdir / "xdg"), "HF_HUB_OFFLINE": "1", "DESCRY_AGENT__ENABLED": "false"}
    args = [*descry_command(), "caption", str(folder), "--model", str(model)]
    log_path = workdir / "caption.log"
    first: float | None = None
    peak_kb = 0
    with open(log_path, "wb") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    proc.returncode = os.waitstatus_to_exitcode(status)
                    break
                if first is None and any(folder.glob("*.txt")):
                    first = time.perf_counter() - t0
                peak_kb = max(peak_kb, _high_water_kb(proc.pid))
                time.sleep(0.1)
        finally:
            if proc.returncode is None:  # interrupted: stop the command and reap it
                proc.kill()
                proc.wait()
        seconds = time.perf_counter() - t0
    ok = len(list(folder.glob("*.txt")))
    out: dict[str, Any] = {
        "command": "DESCRY_AGENT__ENABLED=false descry caption FOLDER --model DIR",
        "images": count,
        "ok": ok,
        "exit_code": proc.returncode,
        "seconds": round(seconds, 2),
        "images_per_second": round(ok / seconds, 4) if seconds else 0.0,
        "first_caption_s": round(first if first is not None else seconds, 2),
        "peak_rss_mb": round((peak_kb or usage.ru_maxrss) / 1024, 1),
    }
    if proc.returncode != 0 or ok < count:
        out["log_tail"] = log_path.read_text(errors="replace")[-2000:]
    return out


def process_phase(model: Path, label: str, count: int, size: tuple[int, int], workdir: Path) -> dict[str, Any]:
    """Build the folder, run the command once, clean up; the result for the JSON file and RESULTS.md."""
    from descry.bench.run import _load_average

    folder = workdir / "photos"
    try:
        mean = camera_folder(folder, count, size)
        start = _load_average()
        out = run_caption(folder, model, workdir, count)
        out.update(
            model=label,
            source=f"{size[0]}x{size[1]} JPEG ({size[0] * size[1] / 1e6:.0f} MP, {mean / 2**20:.1f} MB)",
            load_average_start=start,
            load_average_end=_load_average(),
        )
        return out
    finally:
        shutil.rmtree(folder, ignore_errors=True)
