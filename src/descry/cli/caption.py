"""The command line: caption, models (and serve, batch, jobs, worker, bench as they land)."""

from __future__ import annotations

import asyncio
import json
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from descry.backends.hub import quiet_output
from descry.cli_console import collected_warnings, print_error, print_models
from descry.cli_jobs import jobs_app, worker
from descry.config import ModelSettings, Settings
from descry.errors import ConfigError, DescryError
from descry.outputs import JsonlWriter, OutputFormat, OutputPlan
from descry.runner import CaptionRun, RunSummary
from descry.schemas import CaptionRequest, Detail, Enrichment, GenerationParams, ImageRef, ItemError, SourceKind
from descry.sources import IMAGE_GLOBS, expand

app = typer.Typer(
    help="descry: caption and enrich images with vision-language models.",
    epilog="Documentation: docs/ (mkdocs serve) and README.md in the project.",
    no_args_is_help=True,
)
app.add_typer(jobs_app, name="jobs")
app.command()(worker)
err = Console(stderr=True)


# options shared by `caption` and `batch`
ModelOpt = Annotated[str | None, typer.Option("--model", "-m", help="preset, HF model id or local dir")]
BackendOpt = Annotated[str | None, typer.Option(help="force a backend (hf_vlm, blip, ...)")]
BaseUrlOpt = Annotated[str | None, typer.Option(help="OpenAI-compatible server URL")]
PromptOpt = Annotated[str | None, typer.Option(help="instruction or prefix for the model")]
TaskOpt = Annotated[str | None, typer.Option(help="model task, e.g. <MORE_DETAILED_CAPTION>")]
DetailOpt = Annotated[Detail, typer.Option(help="brief or detailed")]
MaxTokensOpt = Annotated[int | None, typer.Option(min=1, max=4096, help="max new tokens")]
BatchSizeOpt = Annotated[int | None, typer.Option(min=1, max=1024, help="images per device batch")]
DeviceOpt = Annotated[str | None, typer.Option(help="auto, cpu, cuda, cuda:N or mps")]
DtypeOpt = Annotated[str | None, typer.Option(help="auto, float32, bfloat16 or float16")]
RecursiveOpt = Annotated[bool, typer.Option("--recursive/--no-recursive", help="descend into subfolders")]
GlobOpt = Annotated[list[str] | None, typer.Option("--glob", help="file name patterns to include")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")]


def main() -> None:
    app()


def build_settings(**overrides: Any) -> Settings:
    """Settings from the environment and .env, with command-line flags on top."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        settings = Settings()
        model = ModelSettings.model_validate({**settings.model.model_dump(), **given})
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(p) for p in problem["loc"])
        message = f"invalid setting {where}: {problem['msg']}"
        raise ConfigError(message, hint="check the flag or DESCRY_ variable") from exc
    # the CLI runs as the local user, who may read their own LAN and localhost
    sources = settings.sources.model_copy(update={"allow_private_urls": True})
    return settings.model_copy(update={"model": model, "sources": sources})


def fail(exc: DescryError) -> typer.Exit:
    print_error(err, exc)
    return typer.Exit(2)


@app.command()
def caption(
    inputs: Annotated[list[str], typer.Argument(help="image files, folders, http(s) URLs or s3:// URIs")],
    fmt: Annotated[OutputFormat, typer.Option("--format", "-f", help="txt sidecars, json sidecars, or jsonl")] = "txt",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="a folder (txt/json) or file (jsonl)")] = None,
    skip_existing: Annotated[bool, typer.Option("--skip-existing", help="skip images already captioned")] = False,
    model: ModelOpt = None,
    backend: BackendOpt = None,
    base_url: BaseUrlOpt = None,
    prompt: PromptOpt = None,
    task: TaskOpt = None,
    detail: DetailOpt = "brief",
    max_tokens: MaxTokensOpt = None,
    temperature: Annotated[float | None, typer.Option(min=0.0, max=5.0, help="0 = greedy")] = None,
    top_p: Annotated[float | None, typer.Option(min=0.01, max=1.0, help="nucleus sampling")] = None,
    num_beams: Annotated[int | None, typer.Option(min=1, max=16, help="beam search width")] = None,
    repetition_penalty: Annotated[
        float | None, typer.Option(min=0.5, max=5.0, help="above 1 discourages repeated words (1 = off)")
    ] = None,
    batch_size: BatchSizeOpt = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    quantization: Annotated[
        str | None, typer.Option(help="none, 8bit (bitsandbytes on CUDA, dynamic int8 on CPU) or 4bit (CUDA)")
    ] = None,
    recursive: RecursiveOpt = True,
    glob: GlobOpt = None,
    tags: Annotated[bool, typer.Option("--tags/--no-tags", help="add tags (json/jsonl)")] = True,
    quiet: QuietOpt = False,
) -> None:
    """Caption images. A folder gets NAME.txt beside each image; a URL's caption is printed."""
    quiet_output(terminal=err.is_terminal)
    try:
        settings = build_settings(
            name=model,
            backend=backend,
            base_url=base_url,
            device=device,
            dtype=dtype,
            batch_size=batch_size,
            quantization=quantization,
        )
        refs = expand(inputs, recursive=recursive, globs=glob or IMAGE_GLOBS, settings=settings.sources)
    except DescryError as exc:
        raise fail(exc) from exc
    request = CaptionRequest(
        prompt=prompt,
        task=task,
        detail=detail,
        tags=tags,
        params=GenerationParams(
            max_new_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            num_beams=num_beams,
            repetition_penalty=repetition_penalty,
        ),
    )
    roots = [Path(i) for i in inputs if Path(i).is_dir()]
    to_stdout = output is None and all(r.kind in (SourceKind.url, SourceKind.s3) for r in refs)
    plan = OutputPlan(fmt, output, roots)
    jsonl = JsonlWriter(output, sys.stdout) if fmt == "jsonl" else None
    run = CaptionRun(settings, request, plan, jsonl=jsonl)
    todo, skipped = run.pending(refs, skip_existing)
    if not refs:
        if err.is_terminal:
            err.print("[yellow]no images found[/yellow] (check the path and --glob)")
        else:
            _report(RunSummary(), ["no images found (check the path and --glob)"])
        raise typer.Exit(1)
    # piped: stderr is the JSON summary line only; warnings logged meanwhile go into it
    with nullcontext([]) if err.is_terminal else collected_warnings() as notes:
        summary = _run_with_progress(run, todo, quiet=quiet, to_stdout=to_stdout and fmt == "txt")
    summary.skipped = skipped
    summary.total = len(refs)
    if jsonl:
        jsonl.close()
    _report(summary, notes)
    raise typer.Exit(1 if summary.failed else 0)


def _run_with_progress(run: CaptionRun, todo: list[ImageRef], *, quiet: bool, to_stdout: bool) -> RunSummary:
    interactive = err.is_terminal and not quiet

    def printer(ref: ImageRef, enrichment: Enrichment | None, error: ItemError | None) -> None:
        if enrichment and to_stdout:
            print(enrichment.caption if len(todo) == 1 else f"{ref.name}\t{enrichment.caption}", flush=True)
        if error and interactive:
            err.print(f"[red]failed[/red] {escape(error.name)}: {escape(error.message)}", highlight=False)

    if not interactive:
        return _run(run, todo, printer)
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err, transient=False) as progress:
        bar = progress.add_task("captioning", total=len(todo), rate="")

        def hook(ref: ImageRef, enrichment: Enrichment | None, error: ItemError | None) -> None:
            progress.update(bar, advance=1, rate=progress_rate(run.summary))
            printer(ref, enrichment, error)

        return _run(run, todo, hook)


def _run(run: CaptionRun, todo: list[ImageRef], hook: Any) -> RunSummary:
    try:
        return asyncio.run(run.run(todo, hook))
    except DescryError as exc:
        raise fail(exc) from exc


def progress_rate(summary: RunSummary | None, now: float | None = None) -> str:
    """The progress bar's rate: the summary's images/s, on the summary's clock, for the run so far."""
    if summary is None or not summary.ok:
        return ""
    return format_rate(summary.rate_so_far(now))


def format_rate(rate: float) -> str:
    return f"{rate:.2f} img/s"


def _report(summary: RunSummary, notes: list[str] | None = None) -> None:
    if not err.is_terminal:
        data = {
            "total": summary.total,
            "ok": summary.ok,
            "failed": summary.failed,
            "skipped": summary.skipped,
            "seconds": round(summary.seconds, 3),
            "failures": [f.model_dump() for f in summary.failures],
        }
        if notes:
            data["warnings"] = notes
        err.file.write(json.dumps(data) + "\n")
        err.file.flush()
        return
    err.print(
        f"{summary.ok} captioned, {summary.failed} failed, {summary.skipped} skipped "
        f"in {summary.seconds:.1f}s ({format_rate(summary.images_per_second)})"
    )
    if summary.failures:
        table = Table("image", "error", "message", title="failures")
        for failure in summary.failures:
            table.add_row(escape(failure.name), escape(failure.code), escape(failure.message))
        err.print(table)


@app.command()
def models(as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> None:
    """List the model presets."""
    from descry.backends.registry import PRESET_NOTES, PRESETS
    from descry.config import DEFAULT_MODEL

    rows = [
        {
            "name": name,
            "model_id": spec.model_id,
            "backend": spec.backend,
            "default": name == DEFAULT_MODEL,
            "notes": PRESET_NOTES.get(name, ""),
        }
        for name, spec in PRESETS.items()
    ]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    print_models(Console(), rows)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="address to bind (default 0.0.0.0)")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="port (default 8000)")] = None,
    workers: Annotated[int | None, typer.Option(min=1, max=64, help="processes (one model each)")] = None,
    reload: Annotated[bool, typer.Option("--reload", help="restart on code changes (development)")] = False,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning or error")] = None,
    model: ModelOpt = None,
) -> None:
    """Run the HTTP API (docs at /docs); the model loads in the background, /ready says when it is up."""
    import os

    try:
        import uvicorn
    except ImportError as exc:
        from descry.errors import MissingDependency

        raise fail(MissingDependency("uvicorn", "server")) from exc
    settings = Settings()
    server = settings.server
    if log_level:
        os.environ["DESCRY_LOG_LEVEL"] = log_level  # the worker processes build their Settings from the env
    if model:
        os.environ["DESCRY_MODEL__NAME"] = model
    level = (log_level or settings.log_level).lower()
    uvicorn.run(
        "descry.api.app:app_from_env",
        factory=True,
        host=host or server.host,
        port=port or server.port,
        workers=None if reload else (workers or server.workers),
        reload=reload,
        log_level=level,
        log_config=None,
        access_log=False,
        # descry's own middleware reads X-Forwarded-For from trusted proxies only; uvicorn must not rewrite it
        forwarded_allow_ips=",".join(settings.security.trusted_proxies) or "",
        proxy_headers=bool(settings.security.trusted_proxies),
        timeout_graceful_shutdown=server.graceful_shutdown_s,
        root_path=server.root_path,
    )


@app.command()
def bench(
    profile: Annotated[
        str, typer.Option(help="tiny (seconds), cpu (BLIP-base) or gpu (Qwen2.5-VL-7B, Phi-3.5-V)")
    ] = "cpu",
    out: Annotated[Path | None, typer.Option(help="folder for <profile>-<date>.json")] = Path("benchmarks/results"),
    images: Annotated[
        int | None, typer.Option(min=1, help="images per model for the engine (default: profile's)")
    ] = None,
    model: Annotated[list[str] | None, typer.Option("--model", "-m", help="only these models of the profile")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, max=256, help="engine batch size override")] = None,
    results_md: Annotated[Path | None, typer.Option("--results-md", help="also update this RESULTS.md")] = None,
    http: Annotated[bool, typer.Option("--http/--no-http", help="measure the HTTP server too")] = True,
    phi3v_code: Annotated[Path | None, typer.Option(help="folder with the Phi-3-V remote code files")] = None,
    workdir: Annotated[Path | None, typer.Option(help="where the random-weight models are written")] = None,
) -> None:
    """Benchmark baseline vs engine vs HTTP on architecture-exact random models, plus JPEG decoding."""
    from descry.bench import get_profile, markdown, run_profile, update_results

    try:
        chosen = get_profile(profile, images=images, models=model, batch_size=batch_size)
        result = run_profile(
            chosen, out_dir=out, workdir=workdir, remote_code=[phi3v_code] if phi3v_code else None, http=http,
            log=lambda line: err.print(line, markup=False, highlight=False),
        )
    except DescryError as exc:
        raise fail(exc) from exc
    print(markdown(result))
    if results_md is not None:
        update_results(results_md, result)
    if "written_to" in result:
        err.print(f"results written to {escape(str(result['written_to']))}")


@app.command()
def batch(
    inputs: Annotated[list[str], typer.Argument(help="folders, image files or s3:// prefixes")],
    engine: Annotated[str, typer.Option(help="local (this machine) or ray (a Ray cluster)")] = "local",
    address: Annotated[str | None, typer.Option(help="Ray cluster, e.g. ray://head:10001 or auto")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="*.jsonl or *.parquet")] = Path(
        "results.jsonl"
    ),
    sink: Annotated[list[str] | None, typer.Option("--sink", help="also deliver here (repeatable)")] = None,
    model: ModelOpt = None,
    backend: BackendOpt = None,
    base_url: BaseUrlOpt = None,
    prompt: PromptOpt = None,
    task: TaskOpt = None,
    detail: DetailOpt = "brief",
    max_tokens: MaxTokensOpt = None,
    batch_size: BatchSizeOpt = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    replicas: Annotated[int | None, typer.Option(min=1, help="Ray: model replicas (one per GPU)")] = None,
    gpus_per_replica: Annotated[float | None, typer.Option(min=0, help="Ray: GPUs each (0 = CPU)")] = None,
    num_cpus: Annotated[int | None, typer.Option(min=1, help="Ray: CPUs of a local cluster")] = None,
    recursive: RecursiveOpt = True,
    glob: GlobOpt = None,
    tags: Annotated[bool, typer.Option("--tags/--no-tags", help="add tags")] = True,
    quiet: QuietOpt = False,
) -> None:
    """Enrich a folder or bucket into one JSONL or Parquet file; a second run skips what is done."""
    from descry.batch import BatchOutput, EngineName, RayOptions, run_batch
    from descry.sinks import build_sinks

    quiet_output(terminal=err.is_terminal)
    if engine not in ("local", "ray"):
        raise typer.BadParameter("use local or ray", param_hint="--engine")
    ray_only = {"--address": address, "--replicas": replicas, "--gpus-per-replica": gpus_per_replica}
    if engine == "local" and (given := [name for name, value in ray_only.items() if value is not None]):
        raise typer.BadParameter(f"{', '.join(given)} needs --engine ray", param_hint="--engine")
    try:
        settings = build_settings(
            name=model, backend=backend, base_url=base_url, device=device, dtype=dtype, batch_size=batch_size
        )
        refs = expand(inputs, recursive=recursive, globs=glob or IMAGE_GLOBS, settings=settings.sources)
        out = BatchOutput(output)
        sinks = build_sinks(sink or [], settings)
    except DescryError as exc:
        raise fail(exc) from exc
    if not refs:
        err.print("[yellow]no images found[/yellow] (check the path and --glob)")
        raise typer.Exit(1)
    params = GenerationParams(max_new_tokens=max_tokens)
    request = CaptionRequest(prompt=prompt, task=task, detail=detail, tags=tags, params=params)
    options = RayOptions(address, replicas, gpus_per_replica, num_cpus)
    engine_name: EngineName = "ray" if engine == "ray" else "local"
    progress = None if quiet or not err.is_terminal else Progress(*_BATCH_COLUMNS, console=err)
    hook = None
    if progress is not None:
        progress.start()
        bar = progress.add_task("enriching", total=None)
        hook = _advancer(progress, bar)
    try:
        work = run_batch(
            settings, request, refs, out, sinks=sinks, engine=engine_name, ray=options, on_result=hook
        )
        result = asyncio.run(work)
    except DescryError as exc:
        raise fail(exc) from exc
    finally:
        if progress is not None:
            progress.stop()
    result.summary.failures.extend(result.delivery_failures)
    _report(result.summary)
    if err.is_terminal:
        err.print(f"results in {escape(str(output))}")
    raise typer.Exit(0 if result.ok else 1)


_BATCH_COLUMNS = (TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn())


def _advancer(progress: Progress, bar: Any) -> Any:
    """An on_result hook that moves the bar one image on."""

    def advance(*_: object) -> None:
        progress.advance(bar)

    return advance


if __name__ == "__main__":
    main()
