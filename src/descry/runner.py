"""The CLI's caption run: ``Descry.enrich_many`` over the images, each result written as it comes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from descry.config import Settings
from descry.core import Descry, Result
from descry.engine.pipeline import Engine, describe_error
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
        """Caption every ref through one Descry; the model loads only once the first image has decoded."""
        summary = self.summary = RunSummary(total=len(refs))
        if not refs:
            return summary
        summary.started = time.perf_counter()
        try:
            async with Descry(self.settings, engine=self.engine) as descry:
                async for result in descry.enrich_many(refs, self.request):
                    await self._record(result, summary, on_result)
        finally:
            summary.seconds = time.perf_counter() - summary.started
        return summary

    async def _record(self, result: Result, summary: RunSummary, on_result: ResultHook | None) -> None:
        """Write one result as soon as it is ready; a failed image or write is counted, never raised."""
        if result.enrichment is None:
            assert result.error is not None
            self._failed(result.ref, result.error, summary, on_result)
            return
        try:
            await asyncio.to_thread(self._write, result.ref, result.enrichment)
        except Exception as exc:  # each image fails alone
            code, message = describe_error(exc)
            self._failed(result.ref, ItemError(name=result.ref.name, code=code, message=message), summary, on_result)
            return
        summary.ok += 1
        if on_result:
            on_result(result.ref, result.enrichment, None)

    @staticmethod
    def _failed(ref: ImageRef, error: ItemError, summary: RunSummary, on_result: ResultHook | None) -> None:
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
