"""The durable job store behind the API: `/async-batch-caption` and `/v1/jobs` share one JobService.

Workers start once the model has loaded, so images wait in the database, not in memory.
"""

from __future__ import annotations

import logging

from descry.api.bodies import AsyncBatchStatus, BatchProgress, ErrorDetail, SeedBatchItem
from descry.jobs.service import JobService
from descry.jobs.store import ItemResult
from descry.schemas import CaptionRequest, ImageRef, JobState, JobStatus

log = logging.getLogger("descry.api.jobs")

SEED_STATES = {
    JobState.queued: "pending",
    JobState.running: "processing",
    JobState.completed: "completed",
    JobState.completed_with_errors: "completed",
    JobState.failed: "failed",
    JobState.cancelled: "failed",
}
SEED_RESULT_LIMIT = 10_000


def seed_result_item(row: ItemResult) -> SeedBatchItem:
    if row.result is not None:
        return SeedBatchItem(image_path=row.name, caption=row.result.caption, tags=[t.name for t in row.result.tags])
    error = ErrorDetail(code=row.error.code, message=row.error.message) if row.error else None
    return SeedBatchItem(image_path=row.name, error=error)


class StoreBatches:
    """The seed async-batch protocol on top of durable jobs."""

    def __init__(self, jobs: JobService, workers: int = 1) -> None:
        self.jobs = jobs
        self.workers = workers

    async def start(self) -> None:
        await self.jobs.open()

    def start_workers(self) -> None:
        """Called once the model is ready."""
        self.jobs.start_workers(self.workers)

    async def submit(self, files: list[ImageRef], request: CaptionRequest) -> str:
        return await self.jobs.submit(request, files)

    async def status(self, batch_id: str) -> AsyncBatchStatus | None:
        from descry.errors import NotFound

        try:
            job = await self.jobs.store.get_job(batch_id)
        except NotFound:
            return None
        result = None
        if job.state not in (JobState.queued, JobState.running):
            rows = await self.jobs.store.results(batch_id, limit=SEED_RESULT_LIMIT)
            result = [seed_result_item(row) for row in rows]
        return AsyncBatchStatus(
            task_id=job.id,
            status=SEED_STATES[job.state],  # type: ignore[arg-type]
            message=progress_message(job),
            result=result,
            progress=BatchProgress(total=job.total, done=job.done + job.failed, failed=job.failed),
        )

    async def close(self) -> None:
        await self.jobs.close()


def progress_message(job: JobStatus) -> str:
    finished = job.done + job.failed
    if job.state is JobState.queued:
        return f"Queued {job.total} images"
    if job.state is JobState.running:
        return f"Processed {finished}/{job.total} images"
    if job.state is JobState.failed:
        return f"All {job.total} images failed"
    if job.state is JobState.cancelled:
        return f"Cancelled after {finished}/{job.total} images"
    suffix = f" ({job.failed} failed)" if job.failed else ""
    return f"Processed {finished}/{job.total} images{suffix}"
