"""What every caption route does: enrich, count, deliver; and many images with bounded concurrency."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from descry.api.metrics import ApiMetrics
from descry.engine.pipeline import describe_error
from descry.enrich.enricher import Enricher
from descry.errors import Overloaded
from descry.schemas import CaptionRequest, Enrichment, ImageRef, ItemError
from descry.sinks.pool import SinkPool

log = logging.getLogger("descry.api")


@dataclass
class Captioned:
    enrichment: Enrichment
    delivery: dict[str, str | None] = field(default_factory=dict)


class CaptionService:
    """One image or many, through the shared Enricher; network input never reads unlisted paths."""

    def __init__(self, enricher: Enricher, sinks: SinkPool, metrics: ApiMetrics, *, concurrency: int) -> None:
        self.enricher = enricher
        self.sinks = sinks
        self.metrics = metrics
        self.concurrency = concurrency

    @property
    def backend_name(self) -> str:
        return self.enricher.engine.backend.name

    async def caption(
        self, ref: ImageRef, request: CaptionRequest, *, deliver: list[str] | None = None
    ) -> Captioned:
        """Enrich one image, then deliver it to the request's sinks (or ``deliver`` when given)."""
        names = self.sinks.check(
            deliver if deliver is not None else self.sinks.names_for(request.sinks, asset_id=request.asset_id)
        )
        enrichment = await self.enricher.enrich(ref, request, trusted_paths=False)
        self.metrics.image_done()
        delivery = await self.sinks.deliver(names, enrichment, ref)
        for sink, error in delivery.items():
            if error:
                self.metrics.failure("delivery_failed")
                log.warning("delivery to %s failed for %s: %s", sink, ref.name, error)
        return Captioned(enrichment, delivery)

    async def caption_many(
        self, items: list[tuple[ImageRef, CaptionRequest]], *, retry_overloaded: bool = False
    ) -> list[Captioned | ItemError]:
        """Every item, in order; one bad image fails only itself. Items share device batches."""
        limit = asyncio.Semaphore(self.concurrency)

        async def one(ref: ImageRef, request: CaptionRequest) -> Captioned | ItemError:
            async with limit:
                return await self.caption_or_error(ref, request, retry_overloaded=retry_overloaded)

        return list(await asyncio.gather(*(one(ref, req) for ref, req in items)))

    async def caption_or_error(
        self, ref: ImageRef, request: CaptionRequest, *, retry_overloaded: bool = False, tries: int = 30
    ) -> Captioned | ItemError:
        for attempt in range(tries):
            try:
                return await self.caption(ref, request)
            except Overloaded as exc:
                if not retry_overloaded or attempt == tries - 1:
                    return self._failed(ref, exc)
                await asyncio.sleep(exc.retry_after)
            except Exception as exc:
                return self._failed(ref, exc)
        raise AssertionError("unreachable")

    def _failed(self, ref: ImageRef, exc: BaseException) -> ItemError:
        code, message = describe_error(exc)
        if code == "internal_error":
            log.error("unexpected error captioning %s", ref.name, exc_info=exc)
            message = "the server hit an unexpected error on this image; it was logged"
        self.metrics.failure(code)
        return ItemError(name=ref.name, code=code, message=message)
