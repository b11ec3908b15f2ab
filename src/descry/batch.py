"""`descry batch`: enrich a folder or bucket into one resumable JSONL or Parquet file, locally or on Ray.

Both engines produce the same rows; only successes are written, so a second run skips every image
already in the output and retries the ones that failed. Parquet files cannot be appended to, so new
rows first go to a JSONL journal beside the output (``NAME.parquet.pending.jsonl``); the journal is
folded into the Parquet file atomically at the end of a run, or at the start of the next one after
a crash.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from descry.config import Settings
from descry.errors import InputError
from descry.fileio import replacing
from descry.jobs.ray_runner import RayOptions, enrich_with_ray, ray_session
from descry.runner import CaptionRun, RunSummary
from descry.schemas import CaptionRequest, Enrichment, ImageRef, ItemError
from descry.sinks import Sink, close_sinks, deliver_all, start_sinks
from descry.sinks.jsonl import JsonlSink, jsonl_lines, jsonl_names
from descry.sinks.pool import SinkPool

BatchFormat = Literal["jsonl", "parquet"]
EngineName = Literal["local", "ray"]
ResultHook = Callable[[ImageRef, Enrichment | None, ItemError | None], None]

_SUFFIXES: dict[str, BatchFormat] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_MAX_PENDING_DELIVERIES = 64


def _pyarrow() -> Any:
    from descry.errors import require

    require("pyarrow.parquet", "ray")
    return require("pyarrow", "ray")


def parquet_schema(pa: Any) -> Any:
    """Queryable columns, plus the whole enrichment as JSON (the same text as a JSONL line)."""
    tag = pa.struct([("name", pa.string()), ("source", pa.string()), ("score", pa.float64())])
    return pa.schema(
        [
            ("name", pa.string()),
            ("asset_id", pa.string()),
            ("caption", pa.string()),
            ("source", pa.string()),
            ("task", pa.string()),
            ("tags", pa.list_(tag)),
            ("width", pa.int64()),
            ("height", pa.int64()),
            ("format", pa.string()),
            ("enhanced", pa.bool_()),
            ("enrichment", pa.string()),
        ]
    )


def parquet_row(line: str) -> dict[str, Any]:
    """One Parquet row from one JSONL line."""
    data = json.loads(line)
    image = data.get("image") or {}
    tags = data.get("tags") or []
    return {
        "name": data["name"],
        "asset_id": data.get("asset_id"),
        "caption": data.get("caption", ""),
        "source": data.get("source", ""),
        "task": data.get("task"),
        "tags": [{"name": t["name"], "source": t["source"], "score": t.get("score", 1.0)} for t in tags],
        "width": image.get("width"),
        "height": image.get("height"),
        "format": image.get("format"),
        "enhanced": bool(data.get("enhanced", False)),
        "enrichment": line,
    }


class BatchOutput:
    """The one file a batch writes: JSONL appended line by line, or Parquet through a JSONL journal."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        fmt = _SUFFIXES.get(self.path.suffix.lower())
        if fmt is None:
            raise InputError(
                f"cannot tell the output format from {self.path.name!r}",
                hint="name the output *.jsonl or *.parquet",
            )
        self.fmt: BatchFormat = fmt
        if fmt == "parquet":
            _pyarrow()

    @property
    def journal(self) -> Path:
        """Where rows go while the run lasts: the output itself for JSONL, a side file for Parquet."""
        if self.fmt == "jsonl":
            return self.path
        return self.path.with_name(self.path.name + ".pending.jsonl")

    def recover(self) -> None:
        """Fold a journal left by an interrupted Parquet run into the output."""
        if self.fmt == "parquet" and self.journal.is_file():
            self.finish()

    def done_names(self) -> set[str]:
        """Names of the images already in the output."""
        names = set(jsonl_names(self.journal))
        if self.fmt == "parquet" and self.path.is_file():
            names.update(self._parquet_table(columns=["name"]).column("name").to_pylist())
        return names

    def writer(self) -> JsonlSink:
        """The jsonl sink the rows go to (the same lines as every other jsonl sink)."""
        return JsonlSink(self.journal)

    def finish(self) -> None:
        """Complete the output: for Parquet, rewrite it with the journal's rows, then drop the journal."""
        if self.fmt == "jsonl" or not self.journal.is_file():
            return
        pa = _pyarrow()
        schema = parquet_schema(pa)
        seen: set[str] = set()
        tables = []
        if self.path.is_file():
            existing = self._parquet_table().select(schema.names).cast(schema)
            seen.update(existing.column("name").to_pylist())
            tables.append(existing)
        rows = []
        for line in jsonl_lines(self.journal):
            row = parquet_row(line)
            if row["name"] not in seen:
                seen.add(row["name"])
                rows.append(row)
        tables.append(pa.Table.from_pylist(rows, schema=schema))
        self._write_parquet(pa.concat_tables(tables))
        self.journal.unlink()

    def _parquet_table(self, columns: list[str] | None = None) -> Any:
        pq = _pyarrow().parquet
        try:
            return pq.read_table(self.path, columns=columns)
        except (OSError, ValueError) as exc:
            raise InputError(
                f"cannot read the existing output {self.path}: {exc}",
                hint="move the file away to start afresh, or choose another --output",
            ) from exc

    def _write_parquet(self, table: Any) -> None:
        pq = _pyarrow().parquet
        with replacing(self.path) as tmp:
            pq.write_table(table, tmp)


@dataclass
class BatchResult:
    summary: RunSummary
    delivery_failures: list[ItemError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.summary.failed and not self.delivery_failures


class Deliveries:
    """Sends each enrichment to the sinks on the event loop; a failed sink is recorded, never raised."""

    def __init__(self, sinks: list[Sink], loop: asyncio.AbstractEventLoop) -> None:
        self.sinks = sinks
        self.loop = loop
        self.failures: list[ItemError] = []
        self._pending: list[Future[None]] = []

    async def _deliver(self, enrichment: Enrichment, ref: ImageRef) -> None:
        for sink, error in (await deliver_all(self.sinks, enrichment, ref)).items():
            if error is not None:
                failure = ItemError(name=ref.name, code="delivery_failed", message=f"{sink}: {error}")
                self.failures.append(failure)

    def submit(self, enrichment: Enrichment, ref: ImageRef) -> None:
        """Queue a delivery from any thread; waits when too many are still in flight."""
        if not self.sinks:
            return
        self._pending = [f for f in self._pending if not f.done()]
        if len(self._pending) >= _MAX_PENDING_DELIVERIES and not _on_loop(self.loop):
            self._pending.pop(0).result()
        self._pending.append(asyncio.run_coroutine_threadsafe(self._deliver(enrichment, ref), self.loop))

    async def drain(self) -> None:
        await asyncio.gather(*(asyncio.wrap_future(f) for f in self._pending))
        self._pending.clear()


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


async def run_batch(
    settings: Settings,
    request: CaptionRequest,
    refs: list[ImageRef],
    output: BatchOutput,
    *,
    sinks: list[Sink] | None = None,
    engine: EngineName = "local",
    ray: RayOptions | None = None,
    on_result: ResultHook | None = None,
) -> BatchResult:
    """Enrich the refs not yet in the output, write each result as it comes, and deliver it to the sinks."""
    output.recover()
    done = output.done_names()
    todo = [ref for ref in refs if ref.name not in done]
    sinks = sinks or []
    deliveries = Deliveries(sinks, asyncio.get_running_loop())
    writer = output.writer()

    def hook(ref: ImageRef, enrichment: Enrichment | None, error: ItemError | None) -> None:
        if enrichment is not None:
            deliveries.submit(enrichment, ref)
        if on_result:
            on_result(ref, enrichment, error)

    await start_sinks(sinks)
    try:
        if engine == "ray" and todo:
            options = ray or RayOptions()
            with ray_session(options):
                summary = await asyncio.to_thread(_run_ray, settings, request, todo, writer, options, hook)
        else:
            run = CaptionRun(settings, request, SinkPool(settings, {"jsonl": writer}), ["jsonl"])
            summary = await run.run(todo, hook)
        await deliveries.drain()
    finally:
        await writer.close()
        await close_sinks(sinks)
    output.finish()
    summary.total, summary.skipped = len(refs), len(refs) - len(todo)
    return BatchResult(summary, deliveries.failures)


def _run_ray(
    settings: Settings,
    request: CaptionRequest,
    refs: list[ImageRef],
    writer: JsonlSink,
    options: RayOptions,
    hook: ResultHook,
) -> RunSummary:
    """The Ray pipeline, with each result written by this (the driver's) thread."""
    summary = RunSummary(total=len(refs))
    t0 = time.perf_counter()

    def collect(ref: ImageRef, enrichment: Enrichment | None, error: ItemError | None) -> None:
        if enrichment is not None:
            try:
                writer.write(enrichment, ref)
            except Exception as exc:  # the row stays unwritten; the image is retried next run
                from descry.errors import describe_error

                code, message = describe_error(exc)
                enrichment, error = None, ItemError(name=ref.name, code=code, message=message)
        if error is not None:
            summary.failed += 1
            summary.failures.append(error)
        else:
            summary.ok += 1
        hook(ref, enrichment, error)

    try:
        enrich_with_ray(settings, request, refs, options, collect)
    finally:
        summary.seconds = time.perf_counter() - t0
    return summary
