"""What the job store hands out: an image's state, a claimed image, and one row of a results page."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from pydantic import BaseModel

from descry.jobs.inputs import ItemInput
from descry.schemas import CaptionRequest, Enrichment, ItemError, JobState


class ItemState(str, Enum):
    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"
    cancelled = "cancelled"


FINISHED_JOB = (JobState.completed, JobState.completed_with_errors, JobState.failed, JobState.cancelled)
OPEN_ITEM = (ItemState.queued.value, ItemState.running.value)
# the largest OFFSET/LIMIT both SQLite (64-bit signed) and PostgreSQL (bigint) accept
MAX_PAGE_OFFSET = 2**63 - 1


@dataclass(frozen=True)
class ClaimedItem:
    """One image a worker now holds a lease on."""

    id: int
    job_id: str
    seq: int
    input: ItemInput
    request: CaptionRequest
    attempts: int
    result: dict[str, Any] | None = None


class ItemResult(BaseModel):
    """One image of a job as results pages show it, in submission order."""

    index: int
    name: str
    asset_id: str | None = None
    state: ItemState
    attempts: int
    result: Enrichment | None = None
    error: ItemError | None = None
