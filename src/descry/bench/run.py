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

from descry.backends.beam_cache import stock_beam_cache
from descry.backends.precision import dtype_name
from descry.backends.vision_attention import stock_attention
from descry.bench.builders import BuiltModel, build
from descry.bench.http import http_available, http_phase
from descry.bench.phases import baseline, batch_sweep, decode_bench, engine_phase, fixed_params
from descry.bench.profiles import ENGINE_VARIANTS, ModelCase, Profile, Target
from descry.bench.workload import MemoryPeak, lifetime_peak_rss_mb, machine, make_images, now_stamp
from descry.config import AgentSettings, BatchSettings, ModelSettings, SecuritySettings, Settings, TagSettings
from descry.cpu_features import cpu_precision
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


def default_settings(profile: Profile, case: ModelCase, built: BuiltModel, data_dir: Path) -> Settings:
    """What `descry caption --model DIR` runs with no other flags: every default (dtype auto, the device's batch
    size, decode threads, batching waits); only the output length is pinned, as on every path."""
    model = ModelSettings(
        name=str(built.path),
        backend=built.backend,
        device=profile.device,
        max_new_tokens=case.max_new_tokens,
        trust_remote_code=built.trust_remote_code,
    )
    return Settings(
        model=model,
        agent=AgentSettings(enabled=False),
        tags=TagSettings(enabled=False),
        security=SecuritySettings(client_rate=0, key_rate=0),
        data_dir=data_dir,
    )


def variant_settings(
    name: str, profile: Profile, case: ModelCase, built: BuiltModel, settings: Settings
) -> Settings | None:
    """The settings of an ENGINE_VARIANTS entry; None for bf16 where the default already is bf16."""
    if name == "default":
        return default_settings(profile, case, built, settings.data_dir)
    if name == "bf16" and cpu_precision("auto").dtype == "bfloat16" and "default" in case.cpu_variants:
        return None
    model = settings.model.model_copy(update=ENGINE_VARIANTS[name])
    return settings.model_copy(update={"model": model})


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
        case.model_key,
        workdir / case.key,
        scale=profile.scale,
        device=profile.device,
        dtype=_torch_dtype(profile.dtype),
        remote_code=remote_code,
    )
    _release(cuda)
    images = make_images(max(case.engine_images, case.baseline_images), profile.image_size)
    params = fixed_params(case.max_new_tokens, case.num_beams)
    settings = bench_settings(profile, case, built, workdir / "data")
    engine = Engine(settings)
    result = _described(profile, case, built)
    result["load_average"] = {"start": _load_average()}
    try:
        log(f"[{case.key}] loading through descry ({built.parameters / 1e6:.0f}M parameters)")
        with MemoryPeak(cuda=cuda) as load_memory:
            await engine.start()
        result["load"] = {"seconds": round(engine.state.load_seconds or 0.0, 2), **load_memory.as_dict()}
        _baselines(engine, case, images[: case.baseline_images], result, cuda=cuda, log=log)
        await _engine_rows(engine, (profile, case, built), settings, images, params, result, log=log)
        result["http"] = await _http(engine, images, params, profile, case, cuda=cuda, enabled=http, log=log)
    except Exception as exc:  # keep what was measured before the failure
        log(f"[{case.key}] failed: {exc!r}")
        result["error"] = repr(exc)
    finally:
        await engine.stop()
        del engine
        _release(cuda)
        shutil.rmtree(built.path, ignore_errors=True)
        result["load_average"]["end"] = _load_average()
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
        "task": case.task,
        "num_beams": case.num_beams,
    }


def _baselines(
    engine: Engine, case: ModelCase, chosen: list[tuple[str, bytes]], result: dict[str, Any], *, cuda: bool, log: Log
) -> None:
    """One generate per image, with stock attention and, where descry fuses it, with the fused one."""
    log(f"[{case.key}] baseline: {case.baseline_images} images, one generate each")
    params = fixed_params(case.max_new_tokens, case.num_beams)
    model = engine.backend.model  # type: ignore[attr-defined]
    with stock_attention(model) as fused, stock_beam_cache(model):
        result["baseline"] = baseline(engine.backend, chosen, params, cuda=cuda, task=case.task).summary()
    if fused and cuda:
        log(f"[{case.key}] baseline again with descry's fused vision attention ({fused} blocks)")
        again = baseline(engine.backend, chosen, params, cuda=cuda, name="baseline_fused", task=case.task)
        result["baseline_fused"] = again.summary()
    log(f"[{case.key}] baseline {result['baseline']['images_per_second']} img/s; engine: {case.engine_images}")


async def _engine_rows(
    engine: Engine,
    what: tuple[Profile, ModelCase, BuiltModel],
    settings: Settings,
    images: list[tuple[str, bytes]],
    params: Any,
    result: dict[str, Any],
    *,
    log: Log,
) -> None:
    """The in-process engine, its CPU variants and the batch-size sweep, each compared to the baseline."""
    profile, case, built = what
    cuda = profile.device.startswith("cuda")
    warmup = case.batch_size if cuda else min(2, case.batch_size)
    base_ips = result["baseline"]["images_per_second"]
    chosen = images[: case.engine_images]
    if case.engine_fp32 or cuda:
        eng = await engine_phase(engine, chosen, params, warmup=warmup, cuda=cuda, task=case.task)
        result["engine"] = eng.summary()
        result["engine"]["speedup"] = round(result["engine"]["images_per_second"] / base_ips, 2) if base_ips else 0.0
        log(f"[{case.key}] engine {result['engine']['images_per_second']} img/s ({result['engine']['speedup']}x)")
    for variant in () if cuda else case.cpu_variants:
        other = variant_settings(variant, profile, case, built, settings)
        if other is None:
            result[f"engine_{variant}"] = {"same_as": "default"}
            continue
        try:
            summary = await _variant_engine(other, chosen, params, base_ips, case.task)
        except Exception as exc:  # e.g. a runtime option whose package is not installed: recorded, the rest runs
            log(f"[{case.key}] engine {variant} skipped: {exc}")
            result[f"engine_{variant}"] = {"skipped": str(exc)}
            continue
        result[f"engine_{variant}"] = summary
        log(
            f"[{case.key}] engine {variant} ({summary.get('dtype')}) {summary['images_per_second']} img/s "
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
    settings: Settings, images: list[tuple[str, bytes]], params: Any, base_ips: float, task: str | None
) -> dict[str, Any]:
    """The engine again with other settings (an ENGINE_VARIANTS entry), measured like the engine row."""
    engine = Engine(settings)
    await engine.start()
    try:  # the warm-up batch also converts what a runtime option converts on first use
        phase = await engine_phase(engine, images, params, warmup=min(2, len(images)), cuda=False, task=task)
        dtype = dtype_name(getattr(engine.backend, "dtype", None))
        batch = engine.batch_size
    finally:
        await engine.stop()
    summary: dict[str, Any] = phase.summary()
    summary.update(dtype=dtype, max_batch_size=batch, decode_threads=settings.decode_threads)
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
        default_ips = model.get("engine_default", {}).get("images_per_second", 0.0)
        runtime = model.get("engine_openvino", {})
        if default_ips and "images_per_second" in runtime:  # a runtime against the best torch path, same dtype
            runtime["vs_default"] = round(runtime["images_per_second"] / default_ips, 2)
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
    process: bool = True,
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
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="descry-bench-", dir=workdir))
    search = list(remote_code or []) + [Path.cwd() / "tests" / "tiny" / "phi3v_remote"]
    cache = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(root / "cache")  # converted runtimes of the random models go with them
    try:
        for case in profile.models:
            try:
                result["models"][case.key] = asyncio.run(bench_model(profile, case, root, search, http=http, log=log))
            except Exception as exc:  # one model failing still leaves the others' numbers
                log(f"[{case.key}] failed: {exc!r}")
                result.setdefault("failed", {})[case.key] = repr(exc)
            _finish(result, profile, out_dir, day)
        if process and profile.process_images:
            result["process"] = _process(profile, root, log)
            _finish(result, profile, out_dir, day)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        if cache is None:
            os.environ.pop("XDG_CACHE_HOME", None)
        else:
            os.environ["XDG_CACHE_HOME"] = cache
    return result


def _process(profile: Profile, root: Path, log: Log) -> dict[str, Any]:
    """`descry caption` as a separate process on the profile's camera-sized JPEGs (its default model)."""
    from descry.bench.process import process_phase

    key = profile.process_model
    log(f"[process] descry caption on {profile.process_images} JPEGs of {profile.process_size} with {key}")
    try:
        built = build(key, root / "process-model", scale=profile.scale, device="cpu", dtype=_torch_dtype("float32"))
        out = process_phase(built.path, built.label, profile.process_images, profile.process_size, root)
    except Exception as exc:  # recorded, so the rest of the run still reports
        log(f"[process] failed: {exc!r}")
        return {"error": repr(exc)}
    log(f"[process] {out['ok']} captioned in {out['seconds']} s, first after {out['first_caption_s']} s")
    return out


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
