"""The CLI's caption run: ``Descry.enrich_many`` over the images, each result delivered to its sinks as it comes.

Sinks are the only way out: ``descry caption -f/-o/--sink`` and ``descry batch``'s result file are
sinks in a SinkPool. A sink that fails fails that image (with the sink's error code), so a re-run
with ``--skip-existing``, which asks the sinks what is done, tries it again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from descry.config import Settings
from descry.core import Descry, Result
from descry.engine.pipeline import Engine
from descry.errors import describe_error
from descry.schemas import CaptionRequest, Enrichment, ImageRef, ItemError
from descry.sinks.base import Sink
from descry.sinks.pool import SinkPool


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
    """One pass over a list of images, delivering each result to ``names`` in ``sinks`` as soon as it is ready.

    ``pending`` and ``run`` must share one event loop (sinks may start background work); the run
    closes the pool when it ends.
    """

    def __init__(
        self,
        settings: Settings,
        request: CaptionRequest,
        sinks: SinkPool,
        names: Sequence[str],
        *,
        engine: Engine | None = None,
    ) -> None:
        self.settings = settings
        self.request = request
        self.sinks = sinks
        self.names = sinks.check(names)
        self.engine = engine
        self.summary: RunSummary | None = None  # the run in progress, for progress displays

    async def pending(self, refs: Iterable[ImageRef], skip_existing: bool) -> tuple[list[ImageRef], int]:
        """The images still to do, and how many were skipped because every sink already has them."""
        refs = list(refs)
        if not skip_existing:
            return refs, 0
        done = await self.sinks.done_many(self.names, refs)
        todo = [ref for ref, finished in zip(refs, done, strict=True) if not finished]
        return todo, len(refs) - len(todo)

    async def run(self, refs: list[ImageRef], on_result: ResultHook | None = None) -> RunSummary:
        """Caption every ref through one Descry; the model loads only once the first image has decoded."""
        summary = self.summary = RunSummary(total=len(refs))
        if not refs:
            await self.sinks.close()
            return summary
        summary.started = time.perf_counter()
        try:
            async with Descry(self.settings, engine=self.engine, sinks=self.sinks) as descry:
                sinks = await self.sinks.get(self.names)
                async for result in descry.enrich_many(refs, self.request, sinks=[]):
                    await self._record(result, sinks, summary, on_result)
        finally:
            summary.seconds = time.perf_counter() - summary.started
        return summary

    async def _record(
        self, result: Result, sinks: list[Sink], summary: RunSummary, on_result: ResultHook | None
    ) -> None:
        """Write one result as soon as it is ready; a failed image or write is counted, never raised."""
        if result.enrichment is None:
            assert result.error is not None
            self._failed(result.ref, result.error, summary, on_result)
            return
        try:
            await _deliver(sinks, result.enrichment, result.ref)
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


async def _deliver(sinks: list[Sink], enrichment: Enrichment, ref: ImageRef) -> None:
    """Deliver to every sink; the first failure is raised (the others are still tried)."""
    outcomes = await asyncio.gather(*(sink.deliver(enrichment, ref) for sink in sinks), return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
