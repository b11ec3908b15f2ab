"""Run a benchmark profile end to end: build the models, measure every path side by side, write results."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from descry.backends.vision_attention import stock_attention
from descry.bench.builders import BuiltModel, build
from descry.bench.http import http_available, http_phase
from descry.bench.phases import baseline, batch_sweep, decode_bench, engine_phase, fixed_params
from descry.bench.profiles import ENGINE_VARIANTS, ModelCase, Profile, Target
from descry.bench.workload import MemoryPeak, lifetime_peak_rss_mb, machine, make_images, now_stamp
from descry.config import AgentSettings, BatchSettings, ModelSettings, SecuritySettings, Settings, TagSettings
from descry.engine.pipeline import Engine

Log = Callable[[str], None]


def bench_settings(profile: Profile, case: ModelCase, built: BuiltModel, data_dir: Path) -> Settings:
    """Settings for the engine and the server: the built model, fixed batching, no agent retries or tags.

    Rate limits are off: the benchmark measures capacity, and every client comes from 127.0.0.1.
    """
    model = ModelSettings(
        name=str(built.path),
        backend=built.backend,
        device=profile.device,
        dtype=profile.dtype,  # type: ignore[arg-type]
        batch_size=case.batch_size,
        max_new_tokens=case.max_new_tokens,
        trust_remote_code=built.trust_remote_code,
    )
    return Settings(
        model=model,
        batching=BatchSettings(max_wait_ms=profile.max_wait_ms, max_queue=max(256, case.batch_size * 8)),
        agent=AgentSettings(enabled=False),
        tags=TagSettings(enabled=False),
        security=SecuritySettings(client_rate=0, key_rate=0),
        data_dir=data_dir,
        decode_threads=profile.decode_threads,
    )


def _torch_dtype(name: str) -> Any:
    import torch

    return getattr(torch, name)


def _release(cuda: bool) -> None:
    gc.collect()
    if cuda:
        import torch

        torch.cuda.empty_cache()


async def bench_model(
    profile: Profile, case: ModelCase, workdir: Path, remote_code: list[Path], *, http: bool, log: Log
) -> dict[str, Any]:
    """Baseline, engine and HTTP for one model, sharing one loaded copy of it."""
    cuda = profile.device.startswith("cuda")
    log(f"[{case.key}] building the {profile.scale} model (random weights)")
    built = await asyncio.to_thread(
        build,
        case.key,
        workdir / case.key,
        scale=profile.scale,
        device=profile.device,
        dtype=_torch_dtype(profile.dtype),
        remote_code=remote_code,
    )
    _release(cuda)
    images = make_images(max(case.engine_images, case.baseline_images), profile.image_size)
    params = fixed_params(case.max_new_tokens)
    settings = bench_settings(profile, case, built, workdir / "data")
    engine = Engine(settings)
    result = _described(profile, case, built)
    try:
        log(f"[{case.key}] loading through descry ({built.parameters / 1e6:.0f}M parameters)")
        with MemoryPeak(cuda=cuda) as load_memory:
            await engine.start()
        result["load"] = {"seconds": round(engine.state.load_seconds or 0.0, 2), **load_memory.as_dict()}
        _baselines(engine, case, images[: case.baseline_images], result, cuda=cuda, log=log)
        await _engine_rows(engine, settings, images, params, case, result, cuda=cuda, log=log)
        result["http"] = await _http(engine, images, params, profile, case, cuda=cuda, enabled=http, log=log)
    except Exception as exc:  # keep what was measured before the failure
        log(f"[{case.key}] failed: {exc!r}")
        result["error"] = repr(exc)
    finally:
        await engine.stop()
        del engine
        _release(cuda)
        shutil.rmtree(built.path, ignore_errors=True)
    return result


def _described(profile: Profile, case: ModelCase, built: BuiltModel) -> dict[str, Any]:
    """The head of a model's result: what was built and how it runs."""
    return {
        "model": built.label,
        "parameters": built.parameters,
        "backend": built.backend,
        "dtype": profile.dtype,
        "device": profile.device,
        "image_size": list(profile.image_size),
        "max_new_tokens": case.max_new_tokens,
        "batch_size": case.batch_size,
    }


def _baselines(
    engine: Engine, case: ModelCase, chosen: list[tuple[str, bytes]], result: dict[str, Any], *, cuda: bool, log: Log
) -> None:
    """One generate per image, with stock attention and, where descry fuses it, with the fused one."""
    log(f"[{case.key}] baseline: {case.baseline_images} images, one generate each")
    with stock_attention(engine.backend.model) as fused:  # type: ignore[attr-defined]
        result["baseline"] = baseline(engine.backend, chosen, case.max_new_tokens, cuda=cuda).summary()
    if fused:
        log(f"[{case.key}] baseline again with descry's fused vision attention ({fused} blocks)")
        again = baseline(engine.backend, chosen, case.max_new_tokens, cuda=cuda, name="baseline_fused")
        result["baseline_fused"] = again.summary()
    log(f"[{case.key}] baseline {result['baseline']['images_per_second']} img/s; engine: {case.engine_images}")


async def _engine_rows(
    engine: Engine,
    settings: Settings,
    images: list[tuple[str, bytes]],
    params: Any,
    case: ModelCase,
    result: dict[str, Any],
    *,
    cuda: bool,
    log: Log,
) -> None:
    """The in-process engine, its CPU variants and the batch-size sweep, each compared to the baseline."""
    warmup = case.batch_size if cuda else min(2, case.batch_size)
    eng = await engine_phase(engine, images[: case.engine_images], params, warmup=warmup, cuda=cuda)
    result["engine"] = eng.summary()
    base_ips = result["baseline"]["images_per_second"]
    result["engine"]["speedup"] = round(result["engine"]["images_per_second"] / base_ips, 2) if base_ips else 0.0
    log(f"[{case.key}] engine {result['engine']['images_per_second']} img/s ({result['engine']['speedup']}x)")
    for variant in () if cuda else case.cpu_variants:
        change = ENGINE_VARIANTS[variant]
        summary = await _variant_engine(settings, change, images[: case.engine_images], params, base_ips)
        result[f"engine_{variant}"] = summary
        log(
            f"[{case.key}] engine with {change} {summary['images_per_second']} img/s "
            f"({summary['speedup']}x the fp32 baseline)"
        )
    if case.sweep:
        log(f"[{case.key}] batch-size sweep: {', '.join(map(str, case.sweep))}")
        result["sweep"] = await batch_sweep(engine, images, params, case.sweep, cuda=cuda)
        log(
            f"[{case.key}] sweep: "
            + ", ".join(f"{k}: {v['images_per_second']} img/s" for k, v in result["sweep"].items())
        )


async def _variant_engine(
    settings: Settings, change: dict[str, str], images: list[tuple[str, bytes]], params: Any, base_ips: float
) -> dict[str, Any]:
    """The engine again with other model settings (an ENGINE_VARIANTS entry), measured like the engine row."""
    model = settings.model.model_copy(update=change)
    engine = Engine(settings.model_copy(update={"model": model}))
    await engine.start()
    try:
        phase = await engine_phase(engine, images, params, warmup=min(2, len(images)), cuda=False)
    finally:
        await engine.stop()
    summary: dict[str, Any] = phase.summary()
    summary["speedup"] = round(summary["images_per_second"] / base_ips, 2) if base_ips else 0.0
    return summary


async def _http(
    engine: Engine,
    images: list[tuple[str, bytes]],
    params: Any,
    profile: Profile,
    case: ModelCase,
    *,
    cuda: bool,
    enabled: bool,
    log: Log,
) -> dict[str, Any]:
    if not enabled:
        return {"skipped": "--no-http"}
    missing = http_available()
    if missing:
        log(f"[{case.key}] HTTP skipped: {missing}")
        return {"skipped": missing}
    log(f"[{case.key}] HTTP at {', '.join(map(str, profile.http_concurrency))} clients")
    try:
        results = await http_phase(
            engine,
            images,
            params,
            profile.http_concurrency,
            case.http_requests_per_client,
            cuda=cuda,
            wait_variants=case.http_wait_variants,
        )
    except Exception as exc:  # recorded, so the rest of the run still reports
        log(f"[{case.key}] HTTP failed: {exc!r}")
        return {"skipped": f"failed: {exc!r}"}
    for key, summary in results.items():
        log(
            f"[{case.key}] HTTP {key}: {summary['images_per_second']} img/s, "
            f"p50 {summary['latency_p50_s']}s, "
            f"{summary['errors']} errors"
        )
    return results


def with_ratios(result: dict[str, Any]) -> None:
    """HTTP images/s as a share of the in-process engine's, per client count."""
    for model in result["models"].values():
        engine_ips = model.get("engine", {}).get("images_per_second", 0.0)
        for summary in model.get("http", {}).values():
            if isinstance(summary, dict) and engine_ips:
                summary["of_engine"] = round(summary["images_per_second"] / engine_ips, 3)


def lookup(result: dict[str, Any], target: Target) -> float | None:
    node: Any = result["models"].get(target.model) if target.model else result
    for part in target.metric.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return float(node) if isinstance(node, int | float) else None


def evaluate(targets: tuple[Target, ...], result: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with the measured value and whether it is met (None: not measured in this run)."""
    out = []
    for target in targets:
        value = lookup(result, target)
        out.append(
            {
                "target": target.label,
                "minimum": target.minimum,
                "measured": value,
                "met": None if value is None else value >= target.minimum,
            }
        )
    return out


def run_profile(
    profile: Profile,
    *,
    out_dir: Path | None,
    workdir: Path | None = None,
    remote_code: list[Path] | None = None,
    http: bool = True,
    log: Log = print,
) -> dict[str, Any]:
    """Run every part of a profile; returns the result and writes ``<out_dir>/<profile>-<date>.json``."""
    started, day = now_stamp()
    result: dict[str, Any] = {"profile": profile.name, "date": started, "machine": machine(profile.device)}
    result["load_average_start"] = _load_average()
    result["decode"] = decode_bench(profile.decode_images, profile.decode_size, profile.decode_target_pixels)
    log(
        f"decode: full {result['decode']['full_ms']} ms, draft {result['decode']['draft_ms']} ms "
        f"({result['decode']['speedup']}x)"
    )
    result["models"] = {}
    root = Path(tempfile.mkdtemp(prefix="descry-bench-", dir=workdir))
    search = list(remote_code or []) + [Path.cwd() / "tests" / "tiny" / "phi3v_remote"]
    try:
        for case in profile.models:
            try:
                result["models"][case.key] = asyncio.run(bench_model(profile, case, root, search, http=http, log=log))
            except Exception as exc:  # one model failing still leaves the others' numbers
                log(f"[{case.key}] failed: {exc!r}")
                result.setdefault("failed", {})[case.key] = repr(exc)
            _finish(result, profile, out_dir, day)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return result


def _load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages: other work on the machine skews CPU numbers."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _finish(result: dict[str, Any], profile: Profile, out_dir: Path | None, day: str) -> None:
    """Ratios, targets and the JSON file, rewritten after every model so a crash keeps what was measured."""
    with_ratios(result)
    result["load_average_end"] = _load_average()
    result["peak_rss_mb"] = lifetime_peak_rss_mb()
    result["targets"] = evaluate(profile.targets, result)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{profile.name}-{day}.json"
        path.write_text(json.dumps({k: v for k, v in result.items() if k != "written_to"}, indent=2) + "\n")
        result["written_to"] = str(path)
