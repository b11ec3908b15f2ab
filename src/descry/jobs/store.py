"""The durable job store: jobs, their images, leases, results, a result cache and a delivery ledger.

``JobStore`` is what workers, the API and the CLI need from a store; ``SqlJobStore`` serves it on
SQLite (the embedded default) and PostgreSQL with one code path. Callers import from here:

* ``records``: ``ItemState``, ``ClaimedItem``, ``ItemResult`` (what the store hands out);
* ``sql/``: ``SqlJobStore`` and ``normalise_url`` (claims, jobs, ledger, connection);
* ``migrate``: the Alembic migrations in ``migrations/`` that create and upgrade the schema;
* ``inputs``: ``submit_uploads``, which saves uploaded files and creates their job.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from descry.jobs.inputs import JobCreator, submit_uploads
from descry.jobs.records import MAX_PAGE_OFFSET, ClaimedItem, ItemResult, ItemState
from descry.jobs.sql.connection import normalise_url
from descry.jobs.sql.job_store import SqlJobStore
from descry.schemas import ItemError, JobState, JobStatus

__all__ = [
    "ClaimedItem",
    "ItemResult",
    "MAX_PAGE_OFFSET",
    "ItemState",
    "JobStore",
    "SqlJobStore",
    "normalise_url",
    "submit_uploads",
]


class JobStore(JobCreator, Protocol):
    """What workers, the API and the CLI need from a job store (``create_job`` and ``find_job`` from JobCreator)."""

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def get_job(self, job_id: str) -> JobStatus: ...
    async def list_jobs(
        self, *, limit: int = 50, offset: int = 0, state: JobState | None = None
    ) -> list[JobStatus]: ...
    async def claim(
        self,
        worker_id: str,
        n: int,
        lease_seconds: float,
        *,
        job_id: str | None = None,
        max_attempts: int | None = None,
    ) -> list[ClaimedItem]: ...
    async def heartbeat(self, worker_id: str, item_ids: Sequence[int], lease_seconds: float) -> set[int]: ...
    async def release(self, worker_id: str, item_ids: Sequence[int]) -> int: ...
    async def save_result(self, item_id: int, worker_id: str, result: dict[str, Any]) -> bool: ...
    async def complete_item(self, item_id: int, worker_id: str, result: dict[str, Any] | None = None) -> bool: ...
    async def fail_item(
        self, item_id: int, worker_id: str, error: ItemError, *, retry_in: float | None = None
    ) -> ItemState | None: ...
    async def cancel(self, job_id: str) -> JobStatus: ...
    async def results(self, job_id: str, *, offset: int = 0, limit: int = 100) -> list[ItemResult]: ...
    async def pending(self, job_id: str | None = None) -> int: ...
    async def cache_get(self, content_hash: str, model: str, params_hash: str) -> dict[str, Any] | None: ...
    async def cache_put(self, content_hash: str, model: str, params_hash: str, enrichment: dict[str, Any]) -> bool: ...
    async def is_delivered(self, idempotency_key: str) -> bool: ...
    async def record_delivery(self, idempotency_key: str, sink: str) -> bool: ...
    async def cleanup(self, older_than_seconds: float) -> list[str]: ...
