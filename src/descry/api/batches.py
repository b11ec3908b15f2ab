"""Asynchronous batches behind ``/async-batch-caption``: the protocol the routes use.

The implementation is ``descry.api.jobs.StoreBatches``, on the durable job store; tests may pass
their own through ``create_app(batches=...)``.
"""

from __future__ import annotations

from typing import Protocol

from descry.api.bodies import AsyncBatchStatus, ErrorDetail, SeedBatchItem
from descry.api.service import Captioned
from descry.schemas import CaptionRequest, ImageRef, ItemError


class BatchManager(Protocol):
    """Accepts a batch of uploaded images and reports its progress and results."""

    async def start(self) -> None: ...

    async def submit(self, files: list[ImageRef], request: CaptionRequest) -> str:
        """Store the images durably and queue the batch; returns its id."""
        ...

    async def status(self, batch_id: str) -> AsyncBatchStatus | None:
        """The batch's state, or None when the id is unknown."""
        ...

    async def close(self) -> None: ...


def seed_item(name: str, outcome: Captioned | ItemError) -> SeedBatchItem:
    """One result in the seeds' batch shape: image_path, caption and tag names (or an error)."""
    if isinstance(outcome, ItemError):
        return SeedBatchItem(image_path=name, error=ErrorDetail(code=outcome.code, message=outcome.message))
    enrichment = outcome.enrichment
    return SeedBatchItem(image_path=name, caption=enrichment.caption, tags=[t.name for t in enrichment.tags])
