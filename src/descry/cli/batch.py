"""`descry batch`: a folder or bucket into one JSONL or Parquet file, on this machine or a Ray cluster."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from descry.backends.hub import quiet_output
from descry.cli.console import report_summary, stderr_console
from descry.cli.options import (
    BackendOpt,
    BaseUrlOpt,
    BatchSizeOpt,
    DetailOpt,
    DeviceOpt,
    DtypeOpt,
    GlobOpt,
    LanguageOpt,
    MaxTokensOpt,
    ModelOpt,
    PolicyOpt,
    PromptOpt,
    QuietOpt,
    RecursiveOpt,
    TaskOpt,
    build_settings,
    fail,
    metadata_settings,
)
from descry.config import Settings
from descry.errors import DescryError
from descry.schemas import CaptionRequest, GenerationParams, ImageRef, MetadataPolicy
from descry.sources import IMAGE_GLOBS, expand

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from descry.batch import BatchOutput, BatchResult
    from descry.runner import ResultHook


OutputOpt = Annotated[
    Path | None,
    typer.Option("--output", "-o", help="*.jsonl or *.parquet (default results.jsonl; with --sink: in the data dir)"),
]


def batch(
    inputs: Annotated[list[str], typer.Argument(help="folders, image files or s3:// prefixes")],
    engine: Annotated[str, typer.Option(help="local (this machine) or ray (a Ray cluster)")] = "local",
    address: Annotated[str | None, typer.Option(help="Ray cluster, e.g. ray://head:10001 or auto")] = None,
    output: OutputOpt = None,
    sink: Annotated[list[str] | None, typer.Option("--sink", help="also deliver here (repeatable)")] = None,
    policy: PolicyOpt = None,
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
    language: LanguageOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Enrich a folder or bucket into one JSONL or Parquet file; a second run skips what is done."""
    from descry.batch import BatchResult, EngineName, RayOptions, run_batch
    from descry.runner import RunSummary

    err = stderr_console()
    quiet_output(terminal=err.is_terminal)
    _check_engine(engine, {"--address": address, "--replicas": replicas, "--gpus-per-replica": gpus_per_replica})
    flags: dict[str, Any] = {"name": model, "backend": backend, "base_url": base_url, "device": device}
    flags.update(dtype=dtype, batch_size=batch_size)
    settings, refs, names, out = _prepare(inputs, recursive, glob, output, sink, policy, flags)
    found = len(refs)
    refs, left_alone = _left_alone(settings, names, refs)
    if not found:
        err.print("[yellow]no images found[/yellow] (check the path and --glob)")
        raise typer.Exit(1)
    params = GenerationParams(max_new_tokens=max_tokens)
    request = CaptionRequest(prompt=prompt, task=task, detail=detail, tags=tags, params=params, language=language)
    options = RayOptions(address, replicas, gpus_per_replica, num_cpus)
    engine_name: EngineName = "ray" if engine == "ray" else "local"

    def work(hook: ResultHook | None) -> Coroutine[Any, Any, BatchResult]:
        return run_batch(settings, request, refs, out, sinks=names, engine=engine_name, ray=options, on_result=hook)

    result = _with_progress(err, not quiet, work) if refs else BatchResult(RunSummary())
    result.summary.total, result.summary.skipped = found, result.summary.skipped + left_alone
    result.summary.failures.extend(result.delivery_failures)
    report_summary(err, result.summary)
    if err.is_terminal:
        err.print(f"results in {escape(str(out.path))}")
    raise typer.Exit(0 if result.ok else 1)


def _prepare(
    inputs: list[str],
    recursive: bool,
    glob: list[str] | None,
    output: Path | None,
    sink: list[str] | None,
    policy: MetadataPolicy | None,
    model_flags: dict[str, Any],
) -> tuple[Settings, list[ImageRef], list[str], BatchOutput]:
    """Settings, images, sinks by the one rule (--sink, else DESCRY_SINKS__DEFAULT when set, else none
    besides the output) and the output file; a mistake is exit 2."""
    from descry.batch import BatchOutput
    from descry.sinks.pool import SinkPool

    try:
        settings = metadata_settings(build_settings(**model_flags), policy=policy, embed=False)
        refs = expand(inputs, recursive=recursive, globs=glob or IMAGE_GLOBS, settings=settings.sources)
        names = SinkPool(settings, face_default=[]).names_for(sink, in_reply=False)
        return settings, refs, names, BatchOutput(output or default_output(settings, inputs, names))
    except DescryError as exc:
        raise fail(exc) from exc


def _left_alone(settings: Settings, names: list[str], refs: list[ImageRef]) -> tuple[list[ImageRef], int]:
    """Under ``--policy skip``, images that already have a caption are not captioned at all: the rest,
    and how many were left alone."""
    from descry.sinks.pool import SinkPool

    if settings.sinks.policy != "skip" or not names:
        return refs, 0

    async def ask() -> list[bool]:
        pool = SinkPool(settings, face_default=[])
        try:
            return await pool.kept_many(names, refs)
        finally:
            await pool.close()

    kept = asyncio.run(ask())
    return [ref for ref, keep in zip(refs, kept, strict=True) if not keep], sum(kept)


def default_output(settings: Settings, inputs: list[str], sinks: list[str]) -> Path:
    """Without ``-o``: ``results.jsonl`` here, unless the results go to sinks (``--sink xmp``), when the
    resume record is kept in the data directory instead (one per set of inputs and sinks), so nothing
    lands in the working directory unasked."""
    if not sinks:
        return Path("results.jsonl")
    key = "\0".join([*sorted(str(Path(i).resolve()) if "://" not in i else i for i in inputs), "", *sorted(sinks)])
    return settings.data_dir / "batches" / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.jsonl"


def _check_engine(engine: str, ray_only: dict[str, object]) -> None:
    """--engine is local or ray; the Ray-only options need --engine ray."""
    if engine not in ("local", "ray"):
        raise typer.BadParameter("use local or ray", param_hint="--engine")
    if engine == "local" and (given := [name for name, value in ray_only.items() if value is not None]):
        raise typer.BadParameter(f"{', '.join(given)} needs --engine ray", param_hint="--engine")


def _with_progress(
    err: Console, show: bool, work: Callable[[ResultHook | None], Coroutine[Any, Any, BatchResult]]
) -> BatchResult:
    """Run the batch, with a bar that moves one image on per result when stderr is a terminal."""
    columns = (TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn())
    progress = Progress(*columns, console=err) if show and err.is_terminal else None
    hook = None
    if progress is not None:
        progress.start()
        hook = _advancer(progress, progress.add_task("enriching", total=None))
    try:
        return asyncio.run(work(hook))
    except DescryError as exc:
        raise fail(exc) from exc
    finally:
        if progress is not None:
            progress.stop()


def _advancer(progress: Progress, bar: TaskID) -> Any:
    """An on_result hook that moves the bar one image on."""

    def advance(*_: object) -> None:
        progress.advance(bar)

    return advance
