"""Caption many images with one engine: bounded concurrency, per-image errors, resumable output."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from descry.config import Settings
from descry.engine.pipeline import Engine, describe_error
from descry.enrich.enricher import Enricher
from descry.outputs import JsonlWriter, OutputPlan, atomic_write_text, render
from descry.schemas import CaptionRequest, Enrichment, ImageRef, ItemError


def images_per_second(ok: int, seconds: float) -> float:
    """descry's one rate, for the progress bar and the summary alike: images captioned per second of
    wall-clock time since captioning started (the model load included, as in the summary's ``seconds``)."""
    return ok / seconds if seconds > 0 else 0.0


@dataclass
class RunSummary:
    total: int = 0
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    failures: list[ItemError] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter, repr=False)  # perf_counter() when captioning began

    @property
    def images_per_second(self) -> float:
        return images_per_second(self.ok, self.seconds)

    def rate_so_far(self, now: float | None = None) -> float:
        """The same rate while the run goes: images done so far over the time since ``started``."""
        return images_per_second(self.ok, (time.perf_counter() if now is None else now) - self.started)


ResultHook = Callable[[ImageRef, Enrichment | None, ItemError | None], None]


class CaptionRun:
    """One pass over a list of images, writing each result as soon as it is ready."""

    def __init__(
        self,
        settings: Settings,
        request: CaptionRequest,
        plan: OutputPlan,
        *,
        jsonl: JsonlWriter | None = None,
        engine: Engine | None = None,
    ) -> None:
        self.settings = settings
        self.request = request
        self.plan = plan
        self.jsonl = jsonl
        self.engine = engine
        self.summary: RunSummary | None = None  # the run in progress, for progress displays

    def pending(self, refs: Iterable[ImageRef], skip_existing: bool) -> tuple[list[ImageRef], int]:
        """The images still to do, and how many were skipped as already done."""
        refs = list(refs)
        todo = [ref for ref in refs if not (skip_existing and self.plan.already_done(ref))]
        return todo, len(refs) - len(todo)

    async def run(self, refs: list[ImageRef], on_result: ResultHook | None = None) -> RunSummary:
        """Caption every ref; the model loads only once the first image has decoded."""
        summary = self.summary = RunSummary(total=len(refs))
        if not refs:
            return summary
        engine = self.engine or Engine(self.settings)
        self._start_lock = asyncio.Lock()
        self._fatal: BaseException | None = None
        summary.started = time.perf_counter()
        try:
            enricher = Enricher(engine, self.settings)
            running: set[asyncio.Task[None]] = set()
            slot = asyncio.Event()

            def finished(task: asyncio.Task[None]) -> None:
                running.discard(task)
                if not task.cancelled():
                    task.exception()  # retrieved here; a fatal error is re-raised from self._fatal
                slot.set()

            for ref in refs:
                while len(running) >= self._concurrency(engine):
                    slot.clear()
                    await slot.wait()
                if self._fatal:
                    break
                task = asyncio.create_task(self._one(enricher, ref, summary, on_result))
                running.add(task)
                task.add_done_callback(finished)
            results = await asyncio.gather(*running, return_exceptions=True)
            if self._fatal:
                raise self._fatal
            for result in results:
                if isinstance(result, BaseException):
                    raise result
        finally:
            summary.seconds = time.perf_counter() - summary.started
            if self.engine is None and engine.state.status != "stopped":
                await engine.stop()
        return summary

    async def _ensure_started(self, engine: Engine) -> None:
        async with self._start_lock:
            if self._fatal:
                raise self._fatal
            if engine.state.status == "stopped":
                try:
                    await engine.start()
                except BaseException as exc:  # the model cannot load: the whole run stops with this error
                    self._fatal = exc
                    raise

    def _concurrency(self, engine: Engine) -> int:
        """Images in flight: enough to fill the batches being prepared and the one on the device."""
        return max(2, engine.batch_size * (self.settings.batching.inflight_batches + 1))

    async def _one(self, enricher: Enricher, ref: ImageRef, summary: RunSummary, on_result: ResultHook | None) -> None:
        try:
            image = await enricher.engine.load_image(ref)
        except Exception as exc:
            self._failed(ref, exc, summary, on_result)
            return
        await self._ensure_started(enricher.engine)
        try:
            enrichment = await enricher.enrich(ref, self.request, image=image)
            await asyncio.to_thread(self._write, ref, enrichment)
        except Exception as exc:  # each image fails alone; the error is reported, never raised
            self._failed(ref, exc, summary, on_result)
            return
        summary.ok += 1
        if on_result:
            on_result(ref, enrichment, None)

    @staticmethod
    def _failed(ref: ImageRef, exc: Exception, summary: RunSummary, on_result: ResultHook | None) -> None:
        code, message = describe_error(exc)
        error = ItemError(name=ref.name, code=code, message=message)
        summary.failed += 1
        summary.failures.append(error)
        if on_result:
            on_result(ref, None, error)

    def _write(self, ref: ImageRef, enrichment: Enrichment) -> None:
        path = self.plan.sidecar_path(ref)
        if path is not None:
            atomic_write_text(path, render(enrichment, self.plan.fmt))
        elif self.jsonl is not None:
            self.jsonl.write(enrichment)
