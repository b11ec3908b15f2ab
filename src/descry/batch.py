"""`descry batch`: enrich a folder or bucket into one resumable JSONL or Parquet file, locally or on Ray.

Both engines produce the same rows and deliver them the same way, through one SinkPool: the output
file is a sink (``BatchOutput``, named ``output``) beside the ``--sink`` ones. Only successes are
written, and a run asks the output sink what is done (``SinkPool.done_many``), so a second run skips
every image already in the output and retries the ones that failed. Parquet files cannot be appended to, so new
rows first go to a JSONL journal beside the output (``NAME.parquet.pending.jsonl``); the journal is
folded into the Parquet file atomically at the end of a run, or at the start of the next one after
a crash.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from descry.config import Settings
from descry.core import Descry
from descry.enrich.language import check_configured
from descry.errors import DeliveryError, InputError, OutputError
from descry.fileio import replacing
from descry.jobs.ray_runner import RayOptions, enrich_with_ray, ray_session
from descry.runner import RunSummary
from descry.schemas import CaptionRequest, Enrichment, ImageRef, ItemError
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
OUTPUT_SINK = "output"


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
    """The one file a batch writes, as a sink: JSONL appended line by line, or Parquet through a JSONL journal.

    ``start`` folds in a journal a crashed run left and reads the names the Parquet file holds (an
    unreadable output is refused before any work); ``done`` is then a lookup, as resume needs.
    """

    name = OUTPUT_SINK

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
        self._rows = JsonlSink(self.journal)
        self._stored: set[str] = set()  # the names in the Parquet file when the run started

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

    async def start(self) -> None:
        await asyncio.to_thread(self._open)

    def _open(self) -> None:
        self.recover()
        if self.fmt == "parquet" and self.path.is_file():
            self._stored = set(self._parquet_table(columns=["name"]).column("name").to_pylist())

    async def deliver(self, enrichment: Enrichment, ref: ImageRef) -> None:
        """Append the row (the same line as every other jsonl sink) to the output or its journal."""
        await self._rows.deliver(enrichment, ref)

    def done(self, ref: ImageRef) -> bool:
        """The image already has a row (in the Parquet file, or the JSONL output or journal)."""
        return ref.name in self._stored or self._rows.done(ref)

    async def close(self) -> None:
        await self._rows.close()

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


class _Delivery:
    """Every result, from either engine, goes through the batch's one SinkPool and is counted here.

    A row goes into the output first: an image whose row cannot be written fails (the next run retries
    it). Only then do the other sinks get it; one that cannot is a delivery failure, and the image, in
    the output already, is not redone.
    """

    def __init__(self, pool: SinkPool, names: list[str], total: int, on_result: ResultHook | None) -> None:
        self.pool = pool
        self.names = names
        self.on_result = on_result
        self.summary = RunSummary(total=total)
        self.failures: list[ItemError] = []

    async def record(self, ref: ImageRef, enrichment: Enrichment | None, error: ItemError | None) -> None:
        if enrichment is not None:
            problem = (await self.pool.deliver([OUTPUT_SINK], enrichment, ref))[OUTPUT_SINK]
            if problem is not None:
                enrichment, error = None, ItemError(name=ref.name, code=OutputError.code, message=problem)
        if enrichment is not None:
            self.summary.ok += 1
            for sink, problem in (await self.pool.deliver(self.names, enrichment, ref)).items():
                if problem is not None:
                    message = f"{sink}: {problem}"
                    self.failures.append(ItemError(name=ref.name, code=DeliveryError.code, message=message))
        elif error is not None:
            self.summary.failed += 1
            self.summary.failures.append(error)
        if self.on_result:
            self.on_result(ref, enrichment, error)


async def run_batch(
    settings: Settings,
    request: CaptionRequest,
    refs: list[ImageRef],
    output: BatchOutput,
    *,
    sinks: Sequence[str] = (),
    engine: EngineName = "local",
    ray: RayOptions | None = None,
    on_result: ResultHook | None = None,
) -> BatchResult:
    """Enrich the refs the output does not hold yet; write each result as it comes and deliver it to ``sinks``."""
    if engine == "ray":  # what the model cannot do for the request is refused here, not in every replica
        check_configured(request, settings)
    pool = SinkPool(settings, {OUTPUT_SINK: output})
    names = [name for name in pool.check(sinks) if name != OUTPUT_SINK]
    try:
        await pool.get([OUTPUT_SINK, *names])  # built and started (the output recovered) before any work
        done = await pool.done_many([OUTPUT_SINK], refs)
        todo = [ref for ref, finished in zip(refs, done, strict=True) if not finished]
        delivery = _Delivery(pool, names, len(todo), on_result)
        try:
            if engine == "ray" and todo:
                await _on_ray(settings, request, todo, ray or RayOptions(), delivery)
            else:
                await _locally(settings, request, todo, delivery)
        finally:
            delivery.summary.seconds = time.perf_counter() - delivery.summary.started
    finally:
        await pool.close()
    output.finish()
    summary = delivery.summary
    summary.total, summary.skipped = len(refs), len(refs) - len(todo)
    return BatchResult(summary, delivery.failures)


async def _locally(settings: Settings, request: CaptionRequest, refs: list[ImageRef], delivery: _Delivery) -> None:
    """This machine's engine; the model loads only once the first image has decoded."""
    if not refs:
        return
    async with Descry(settings) as descry:
        async for result in descry.enrich_many(refs, request, sinks=[]):
            await delivery.record(result.ref, result.enrichment, result.error)


async def _on_ray(
    settings: Settings, request: CaptionRequest, refs: list[ImageRef], options: RayOptions, delivery: _Delivery
) -> None:
    """The Ray pipeline; the driver's thread hands each result to the event loop and waits for its delivery."""
    loop = asyncio.get_running_loop()

    def hand_over(ref: ImageRef, enrichment: Enrichment | None, error: ItemError | None) -> None:
        asyncio.run_coroutine_threadsafe(delivery.record(ref, enrichment, error), loop).result()

    with ray_session(options):
        await asyncio.to_thread(enrich_with_ray, settings, request, refs, options, hand_over)
