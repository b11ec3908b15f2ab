"""`descry caption`: images, folders, URLs or s3:// URIs to sinks (sidecars, JSONL, XMP, ...) or stdout.

``-f/-o`` configure the CLI's own sink (a txt/json sidecar mirroring the input folders, or JSONL to a
file or stdout); ``--sink`` names more. Which sinks run follows the one rule (docs/sinks.md): the
named ones, else ``DESCRY_SINKS__DEFAULT`` when set, else the ``-f txt`` sidecar.
"""

from __future__ import annotations

import asyncio
import json
import sys
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from descry.backends.hub import quiet_output
from descry.backends.precision import start_line
from descry.cli.console import collected_warnings, progress_rate, report_summary, stderr_console
from descry.cli.options import (
    BackendOpt,
    BaseUrlOpt,
    BatchSizeOpt,
    DetailOpt,
    DeviceOpt,
    DryRunOpt,
    DtypeOpt,
    EmbedOpt,
    GlobOpt,
    LanguageOpt,
    MaxTokensOpt,
    ModelOpt,
    PolicyOpt,
    PromptOpt,
    QuietOpt,
    RecursiveOpt,
    TaskOpt,
    XmpOpt,
    build_settings,
    fail,
    metadata_settings,
)
from descry.config import Settings
from descry.errors import DescryError
from descry.runner import CaptionRun, RunSummary
from descry.schemas import (
    CaptionRequest,
    Detail,
    Enrichment,
    FieldChange,
    GenerationParams,
    ImageRef,
    ItemError,
    MetadataPolicy,
    SourceKind,
)
from descry.sinks.base import Sink
from descry.sinks.dryrun import dry_run_sinks
from descry.sinks.jsonl import JsonlSink
from descry.sinks.pool import SinkPool
from descry.sinks.sidecar import SidecarSink
from descry.sources import IMAGE_GLOBS, expand

OutputFormat = Literal["txt", "json", "jsonl"]


def caption(
    inputs: Annotated[list[str], typer.Argument(help="image files, folders, http(s) URLs or s3:// URIs")],
    fmt: Annotated[
        OutputFormat | None, typer.Option("--format", "-f", help="txt sidecars (default), json sidecars, or jsonl")
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="a folder (txt/json) or file (jsonl)")] = None,
    sink: Annotated[
        list[str] | None,
        typer.Option("--sink", help="deliver to this sink, e.g. xmp (repeatable; add -f to keep files)"),
    ] = None,
    xmp: XmpOpt = False,
    embed: EmbedOpt = False,
    policy: PolicyOpt = None,
    dry_run: DryRunOpt = False,
    language: LanguageOpt = None,
    skip_existing: Annotated[
        bool, typer.Option("--skip-existing", help="skip images every sink already has")
    ] = False,
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
    """Caption images. A folder gets NAME.txt beside each image (--xmp: NAME.jpg.xmp); a URL's caption is printed."""
    err = stderr_console()
    quiet_output(terminal=err.is_terminal)
    model_flags: dict[str, Any] = {"name": model, "backend": backend, "base_url": base_url, "device": device}
    model_flags.update(dtype=dtype, batch_size=batch_size, quantization=quantization)
    settings, refs = _settings_and_refs(inputs, recursive, glob, model_flags, policy=policy, embed=embed)
    request = _request(prompt, task, detail, tags, max_tokens, temperature, top_p, num_beams, repetition_penalty)
    request = request.model_copy(update={"language": language})  # checked by the option's callback
    named = [*(sink or []), *(["xmp"] if xmp or embed else [])] or None
    pool, names, to_stdout = _sinks_for(settings, inputs, refs, fmt, output, named)
    if dry_run:
        pool, to_stdout = dry_run_pool(settings, pool, names), False
    run = CaptionRun(settings, request, pool, names)
    if err.is_terminal and not quiet and (line := start_line(settings)):
        err.print(escape(line), highlight=False)
    raise typer.Exit(_caption_all(err, run, refs, skip_existing=skip_existing, quiet=quiet, to_stdout=to_stdout))


def _settings_and_refs(
    inputs: list[str],
    recursive: bool,
    glob: list[str] | None,
    model_flags: dict[str, Any],
    *,
    policy: MetadataPolicy | None,
    embed: bool,
) -> tuple[Settings, list[ImageRef]]:
    """The settings the flags describe and the images the inputs name; a mistake is exit 2."""
    try:
        settings = metadata_settings(build_settings(**model_flags), policy=policy, embed=embed)
        refs = expand(inputs, recursive=recursive, globs=glob or IMAGE_GLOBS, settings=settings.sources)
    except DescryError as exc:
        raise fail(exc) from exc
    return settings, refs


def _request(
    prompt: str | None,
    task: str | None,
    detail: Detail,
    tags: bool,
    max_tokens: int | None,
    temperature: float | None,
    top_p: float | None,
    num_beams: int | None,
    repetition_penalty: float | None,
) -> CaptionRequest:
    """The request the flags describe."""
    params = GenerationParams(
        max_new_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        num_beams=num_beams,
        repetition_penalty=repetition_penalty,
    )
    return CaptionRequest(prompt=prompt, task=task, detail=detail, tags=tags, params=params)


def _sinks_for(
    settings: Settings,
    inputs: list[str],
    refs: list[ImageRef],
    fmt: OutputFormat | None,
    output: Path | None,
    sink: list[str] | None,
) -> tuple[SinkPool, list[str], bool]:
    """``choose_cli_sinks`` for these inputs; an unknown sink fails the command (exit 2)."""
    roots = [Path(i) for i in inputs if Path(i).is_dir()]
    urls_only = output is None and all(r.kind in (SourceKind.url, SourceKind.s3) for r in refs)
    try:
        return choose_cli_sinks(settings, fmt, output, sink, roots, urls_only=urls_only)
    except DescryError as exc:
        raise fail(exc) from exc


def own_sink(settings: Settings, fmt: OutputFormat, output: Path | None, roots: list[Path]) -> Sink:
    """The sink ``-f/-o`` configure: a sidecar mirroring ``roots`` below ``output``, or JSONL (stdout without -o)."""
    if fmt == "jsonl":
        return JsonlSink(output) if output is not None else JsonlSink(stream=sys.stdout)
    return SidecarSink(fmt, output, roots, policy=settings.sinks.policy)


def dry_run_pool(settings: Settings, pool: SinkPool, names: list[str]) -> SinkPool:
    """A pool whose sinks print what they would change (JSON lines on stdout when piped) and write nothing;
    no network sink is started, so nothing is sent either."""
    webhook = settings.sinks.webhook.model_copy(update={"url": None})
    quiet = settings.model_copy(update={"sinks": settings.sinks.model_copy(update={"webhook": webhook})})
    return SinkPool(quiet, dry_run_sinks(names, settings, pool.instances, _print_plan), face_default=[])


def _print_plan(ref: ImageRef, changes: list[FieldChange]) -> None:
    """One image's planned changes: JSON on a pipe, a short table on a terminal."""
    if not sys.stdout.isatty():
        doc = {"name": ref.name, "changes": [c.model_dump() for c in changes]}
        print(json.dumps(doc, ensure_ascii=False), flush=True)
        return
    out = Console(highlight=False)
    out.print(f"[bold]{escape(ref.name)}[/bold]")
    for c in changes:
        before = "(empty)" if c.before is None else repr(_short(c.before))
        after = "(empty)" if c.after is None else repr(_short(c.after))
        what = f"{before} -> {after}" if c.action == "write" else before
        out.print(f"  {c.action:<5} {escape(c.sink)} {escape(c.field)}: {escape(what)}")


def _short(text: str, limit: int = 70) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def choose_cli_sinks(
    settings: Settings,
    fmt: OutputFormat | None,
    output: Path | None,
    sink: list[str] | None,
    roots: list[Path],
    *,
    urls_only: bool,
) -> tuple[SinkPool, list[str], bool]:
    """The pool, the sink names by the one rule (unknown: InputError, exit 2), and whether captions go
    to stdout instead (URLs and S3 objects without -o and the txt format: printed, as before)."""
    chosen: OutputFormat = fmt or "txt"
    own_name = "jsonl" if chosen == "jsonl" else "sidecar"
    given = fmt is not None or output is not None
    requested = [*([own_name] if given else []), *(sink or [])] if given or sink else None
    configured = "default" in settings.sinks.model_fields_set
    use_own = given or (requested is None and not configured)
    instances = {own_name: own_sink(settings, chosen, output, roots)} if use_own else {}
    pool = SinkPool(settings, instances, face_default=[own_name])
    names = pool.names_for(requested, in_reply=False)
    to_stdout = urls_only and use_own and chosen == "txt" and own_name in names
    if to_stdout:
        names.remove(own_name)
    return pool, names, to_stdout


def _caption_all(
    err: Console, run: CaptionRun, refs: list[ImageRef], *, skip_existing: bool, quiet: bool, to_stdout: bool
) -> int:
    """Run what is not done yet, report the summary, return the exit status."""
    if not refs:
        if err.is_terminal:
            err.print("[yellow]no images found[/yellow] (check the path and --glob)")
        else:
            report_summary(err, RunSummary(), ["no images found (check the path and --glob)"])
        return 1
    # piped: stderr is the JSON summary line only; warnings logged meanwhile go into it
    notes_kept: AbstractContextManager[list[str]] = nullcontext([]) if err.is_terminal else collected_warnings()
    with notes_kept as notes:
        try:
            summary, ours = asyncio.run(
                _pending_then_run(err, run, refs, skip_existing, quiet=quiet, to_stdout=to_stdout)
            )
        except DescryError as exc:
            raise fail(exc) from exc
    summary.total = len(refs)
    report_summary(err, summary, [*ours, *notes])
    if err.is_terminal:
        for note in ours:
            err.print(f"[yellow]note[/yellow] {escape(note)}", highlight=False)
    return 1 if summary.failed else 0


async def _pending_then_run(
    err: Console, run: CaptionRun, refs: list[ImageRef], skip_existing: bool, *, quiet: bool, to_stdout: bool
) -> tuple[RunSummary, list[str]]:
    """Fix the run's file names, ask the sinks what is done and what the metadata policy keeps, then
    caption the rest (one event loop for all); the notes say which names changed and what was kept."""
    notes = _renamed_notes(await run.sinks.prepare(run.names, refs))
    todo, skipped = await run.pending(refs, skip_existing)
    kept = await run.sinks.kept_many(run.names, todo, run.request.policy)
    todo = [ref for ref, keep in zip(todo, kept, strict=True) if not keep]
    if any(kept):
        notes.append(
            f"{sum(kept)} image(s) left alone: the metadata policy ({run.settings.sinks.policy}) keeps what is "
            "there (a person's caption or sidecar); --policy overwrite replaces it"
        )
    summary = await _run_with_progress(err, run, todo, quiet=quiet, to_stdout=to_stdout)
    summary.skipped = skipped + sum(kept)
    return summary, notes


def _renamed_notes(renamed: dict[str, dict[Path, Path]]) -> list[str]:
    """One note per image whose output got its full name because another image shares its stem."""
    return [
        f"{sink}: {image} and another image share a stem; written as {target.name}"
        for sink, names in renamed.items()
        for image, target in sorted(names.items())
    ]


async def _run_with_progress(
    err: Console, run: CaptionRun, todo: list[ImageRef], *, quiet: bool, to_stdout: bool
) -> RunSummary:
    interactive = err.is_terminal and not quiet

    def printer(ref: ImageRef, enrichment: Enrichment | None, error: ItemError | None) -> None:
        if enrichment and to_stdout:
            print(enrichment.caption if len(todo) == 1 else f"{ref.name}\t{enrichment.caption}", flush=True)
        if error and interactive:
            err.print(f"[red]failed[/red] {escape(error.name)}: {escape(error.message)}", highlight=False)

    if not interactive:
        return await run.run(todo, printer)
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

        return await run.run(todo, hook)
