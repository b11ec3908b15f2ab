"""What every caption route does: one image or many through the app's Descry, counted in the metrics.

Descry reads (under the network trust policy), enriches and delivers; this adds the API's part:
metrics, a logged internal error answered with a generic message, and Overloaded retries for batches.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from descry.api.metrics import ApiMetrics
from descry.core import Descry
from descry.errors import Overloaded, describe_error
from descry.schemas import CaptionRequest, Enrichment, FieldChange, ImageRef, ItemError
from descry.sinks.pool import SinkPool

log = logging.getLogger("descry.api")


@dataclass
class Captioned:
    enrichment: Enrichment
    delivery: dict[str, str | None] = field(default_factory=dict)
    changes: list[FieldChange] | None = None  # a dry run's report


class CaptionService:
    """One image or many, through the app's Descry (built with the network trust policy)."""

    def __init__(self, descry: Descry, metrics: ApiMetrics, *, concurrency: int) -> None:
        self.descry = descry
        self.metrics = metrics
        self.concurrency = concurrency

    @property
    def sinks(self) -> SinkPool:
        return self.descry.sinks

    @property
    def backend_name(self) -> str:
        return self.descry.engine.backend.name

    async def caption(
        self, ref: ImageRef, request: CaptionRequest, *, deliver: list[str] | None = None
    ) -> Captioned:
        """Enrich one image, then deliver it to the request's sinks (or ``deliver`` when given)."""
        result = await self.descry.enrich(ref, request, sinks=deliver)
        assert result.enrichment is not None
        self.metrics.image_done()
        for sink, error in result.delivery.items():
            if error:
                self.metrics.failure("delivery_failed")
                log.warning("delivery to %s failed for %s: %s", sink, ref.name, error)
        return Captioned(result.enrichment, result.delivery, result.changes)

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
