"""`descry caption`: images, folders, URLs or s3:// URIs to sidecars, JSONL or stdout, with a progress bar."""

from __future__ import annotations

import asyncio
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from descry.backends.hub import quiet_output
from descry.cli.console import collected_warnings, progress_rate, report_summary, stderr_console
from descry.cli.options import (
    BackendOpt,
    BaseUrlOpt,
    BatchSizeOpt,
    DetailOpt,
    DeviceOpt,
    DtypeOpt,
    GlobOpt,
    MaxTokensOpt,
    ModelOpt,
    PromptOpt,
    QuietOpt,
    RecursiveOpt,
    TaskOpt,
    build_settings,
    fail,
)
from descry.errors import DescryError
from descry.outputs import JsonlWriter, OutputFormat, OutputPlan
from descry.runner import CaptionRun, ResultHook, RunSummary
from descry.schemas import CaptionRequest, Enrichment, GenerationParams, ImageRef, ItemError, SourceKind
from descry.sources import IMAGE_GLOBS, expand


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
    err = stderr_console()
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
    params = GenerationParams(
        max_new_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        num_beams=num_beams,
        repetition_penalty=repetition_penalty,
    )
    request = CaptionRequest(prompt=prompt, task=task, detail=detail, tags=tags, params=params)
    roots = [Path(i) for i in inputs if Path(i).is_dir()]
    to_stdout = output is None and all(r.kind in (SourceKind.url, SourceKind.s3) for r in refs)
    jsonl = JsonlWriter(output, sys.stdout) if fmt == "jsonl" else None
    run = CaptionRun(settings, request, OutputPlan(fmt, output, roots), jsonl=jsonl)
    to_stdout = to_stdout and fmt == "txt"
    raise typer.Exit(_caption_all(err, run, refs, skip_existing=skip_existing, quiet=quiet, to_stdout=to_stdout))


def _caption_all(
    err: Console, run: CaptionRun, refs: list[ImageRef], *, skip_existing: bool, quiet: bool, to_stdout: bool
) -> int:
    """Run what is not done yet, report the summary, return the exit status."""
    todo, skipped = run.pending(refs, skip_existing)
    if not refs:
        if err.is_terminal:
            err.print("[yellow]no images found[/yellow] (check the path and --glob)")
        else:
            report_summary(err, RunSummary(), ["no images found (check the path and --glob)"])
        return 1
    # piped: stderr is the JSON summary line only; warnings logged meanwhile go into it
    with nullcontext([]) if err.is_terminal else collected_warnings() as notes:
        summary = _run_with_progress(err, run, todo, quiet=quiet, to_stdout=to_stdout)
    summary.skipped = skipped
    summary.total = len(refs)
    if run.jsonl:
        run.jsonl.close()
    report_summary(err, summary, notes)
    return 1 if summary.failed else 0


def _run_with_progress(
    err: Console, run: CaptionRun, todo: list[ImageRef], *, quiet: bool, to_stdout: bool
) -> RunSummary:
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


def _run(run: CaptionRun, todo: list[ImageRef], hook: ResultHook) -> RunSummary:
    try:
        return asyncio.run(run.run(todo, hook))
    except DescryError as exc:
        raise fail(exc) from exc
