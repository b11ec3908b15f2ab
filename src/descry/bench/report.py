"""The benchmark's markdown: one section per run, and RESULTS.md kept with the latest run per profile."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

MARK = "<!-- bench:{profile} -->"
END = "<!-- /bench:{profile} -->"


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _memory(summary: dict[str, Any]) -> str:
    text = f"{_fmt(summary.get('peak_rss_mb'), 0)} MB RSS"
    if "peak_gpu_allocated_mb" in summary:
        text += f", {summary['peak_gpu_allocated_mb'] / 1024:.1f} GB GPU"
    return text


def _machine(result: dict[str, Any]) -> str:
    m = result["machine"]
    v = m.get("versions", {})
    hw = f"{m['cpu']}, {m['cores']} cores, {_fmt(m.get('memory_gb'), 0)} GB RAM"
    if "gpu" in m:
        hw = f"{m['gpu']['name']} ({m['gpu']['memory_gb']} GB, CUDA {m['gpu']['cuda']}); " + hw
    soft = ", ".join(f"{k} {v[k]}" for k in ("descry", "torch", "transformers", "pillow") if v.get(k))
    return f"{hw}; Python {m['python']}, {soft}"


def throughput_table(result: dict[str, Any]) -> list[str]:
    lines = [
        "| model | path | images | img/s | vs baseline | p50 s | p95 s | decode | preprocess | generate | "
        "postprocess | device busy | mean batch | peak memory |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for key, model in result["models"].items():
        base_ips = model.get("baseline", {}).get("images_per_second") or 0.0
        default = model.get("engine_default") or {}
        rows = [
            ("baseline (1 generate/image)", model.get("baseline")),
            ("baseline with descry's fused vision attention", model.get("baseline_fused")),
            ("engine (in-process)", model.get("engine")),
            (
                f"`descry caption` default path ({default.get('dtype')}, batch {default.get('max_batch_size')})",
                default,
            ),
            ("default path, vision encoder on OpenVINO (evaluated, not adopted)", model.get("engine_openvino")),
            ("engine, --quantization 8bit (not fp32)", model.get("engine_int8")),
            ("engine, --dtype bfloat16 (not fp32)", model.get("engine_bf16")),
        ]
        for name, summary in (model.get("http") or {}).items():
            if isinstance(summary, dict):
                wait = f", max wait {summary['max_wait_ms']:g} ms" if "max_wait_ms" in summary else ""
                rows.append((f"HTTP, {summary.get('clients', name)} clients{wait}", summary))
        for path, s in rows:
            if not s or "images" not in s:
                continue
            stages = s.get("stage_s_per_image", {})
            ratio = s["images_per_second"] / base_ips if base_ips else None
            cells = [
                key,
                path,
                str(s["images"]),
                _fmt(s["images_per_second"], 3),
                f"{_fmt(ratio)}x",
                _fmt(s["latency_p50_s"], 3),
                _fmt(s["latency_p95_s"], 3),
                *(
                    f"{stages[k] * 1000:.1f} ms" if k in stages else "–"
                    for k in ("decode", "preprocess", "generate", "postprocess")
                ),
                _fmt(s.get("device_busy")),
                _fmt(s.get("mean_batch_size"), 1),
                _memory(s),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def process_lines(process: dict[str, Any] | None) -> list[str]:
    """The whole-process `descry caption` run, as a user waits for it."""
    if not process:
        return []
    if "error" in process:
        return [f"`descry caption` as a process: failed ({process['error']}).", ""]
    return [
        f"`descry caption` as a process ({process['command']}): {process['images']} x {process['source']}, "
        f"{process['model']}; {process['ok']} captioned in {process['seconds']:.1f} s wall "
        f"(start-up and model load included): **{process['images_per_second']:.3f} img/s**, first caption after "
        f"**{process['first_caption_s']:.1f} s**, peak RSS {process['peak_rss_mb']:.0f} MB; "
        f"load average {process.get('load_average_start')} → {process.get('load_average_end')}.",
        "",
    ]


def skipped_notes(result: dict[str, Any]) -> list[str]:
    notes = []
    for key, model in result["models"].items():
        http = model.get("http") or {}
        if "skipped" in http:
            notes.append(f"- {key}: HTTP not measured ({http['skipped']}).")
    return notes


def model_line(key: str, model: dict[str, Any]) -> str:
    """What one model is and how it ran, as a list item."""
    size = "x".join(map(str, model["image_size"]))
    beams = f"; {model['num_beams']} beams" if model.get("num_beams", 1) > 1 else ""
    task = f"; task {model['task']}" if model.get("task") else ""
    load = model.get("load_average") or {}
    during = f"; load average {load.get('start')} → {load.get('end')}" if load else ""
    return (
        f"- **{key}**: {model['model']}-shaped, {model['parameters'] / 1e6:.0f}M parameters, "
        "random weights, "
        f"{model['dtype']} on {model['device']}; {size} JPEGs; {model['max_new_tokens']} output tokens "
        f"(min = max); engine batch size {model['batch_size']}; "
        f"load {model.get('load', {}).get('seconds')} s{task}{beams}{during}."
    )


def markdown(result: dict[str, Any]) -> str:
    """One run as markdown: setup, throughput and latency per path, decode, targets."""
    d = result["decode"]
    lines = [
        f"### Profile `{result['profile']}` — {result['date']}",
        "",
        f"Hardware and software: {_machine(result)}.",
        "",
    ]
    if result.get("load_average_start"):
        lines += [
            f"Load average (1/5/15 min) at start {result['load_average_start']}, "
            f"at end {result.get('load_average_end')}.",
            "",
        ]
    lines += [model_line(key, model) for key, model in result["models"].items()]
    lines += ["", *throughput_table(result), ""]
    lines.append(
        "Stage columns are time per image: batch stages (preprocess, generate, postprocess) divided by the "
        "batch size; the engine's *decode* is wall time per image including the wait for a decode thread. "
        "*Device busy* "
        "is the share of wall time the device spent in `generate`; *mean batch* counts warm-up-free batches "
        "(for HTTP, from the batcher's counters)."
    )
    for key, model in result["models"].items():
        if model.get("sweep"):
            points = ", ".join(
                f"{size}: {p['images_per_second']:.2f} img/s (busy {p['device_busy']:.2f})"
                for size, p in model["sweep"].items()
            )
            lines += ["", f"Engine batch-size sweep for {key} (max batch size: throughput): {points}."]
    for key, model in result["models"].items():
        if model.get("error"):
            lines += ["", f"**{key} stopped early:** `{model['error']}` (rows above were measured before)."]
    for key, error in (result.get("failed") or {}).items():
        lines += ["", f"**{key} failed:** `{error}`"]
    lines += [
        "",
        f"Decode: {d['images']} x {d['source']}, {d['mean_file_mb']} MB each, "
        f"to {d['target_pixels']} pixels: "
        f"full decode + resize {d['full_ms']} ms, JPEG draft path {d['draft_ms']} ms — **{d['speedup']}x**.",
        "",
    ]
    lines += process_lines(result.get("process"))
    if result.get("targets"):
        lines += ["| target | measured | met |", "|---|---:|---|"]
        for t in result["targets"]:
            met = "not measured" if t["met"] is None else ("yes" if t["met"] else "**no**")
            lines.append(f"| {t['target']} | {_fmt(t['measured'])} | {met} |")
        lines.append("")
    lines += skipped_notes(result)
    return "\n".join(lines).rstrip() + "\n"


def update_results(path: Path, result: dict[str, Any], notes: str = "") -> None:
    """Replace (or add) this profile's section in RESULTS.md, keeping everything else."""
    profile = result["profile"]
    section = f"{MARK.format(profile=profile)}\n{markdown(result)}{notes}{END.format(profile=profile)}\n"
    text = path.read_text() if path.exists() else "# Benchmark results\n\n"
    pattern = re.compile(
        re.escape(MARK.format(profile=profile)) + r".*?" + re.escape(END.format(profile=profile)) + r"\n?",
        re.S,
    )
    text = pattern.sub(lambda _m: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
