"""Jobs in the SQL store: writing a job with all its images, reading its status and results, cancel, cleanup."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from descry.errors import InputError, NotFound
from descry.jobs.inputs import ItemInput, check_idempotency_key, new_job_id
from descry.jobs.records import FINISHED_JOB, MAX_PAGE_OFFSET, OPEN_ITEM, ItemResult, ItemState
from descry.jobs.sql.connection import SqlConnection
from descry.jobs.tables import deliveries, items, jobs, result_cache
from descry.schemas import Enrichment, ImageRef, ItemError, JobSpec, JobState, JobStatus

INSERT_CHUNK = 1000


class SqlJobs(SqlConnection):
    """Submission, status, results pages, cancellation and cleanup of whole jobs."""

    async def create_job(
        self,
        spec: JobSpec,
        inputs: Sequence[ItemInput | ImageRef],
        *,
        idempotency_key: str | None = None,
        job_id: str | None = None,
    ) -> str:
        """Write a job and all its images in one transaction; an idempotency key returns the first job."""
        if not inputs:
            raise InputError("a job needs at least one image", hint="pass files, paths, URLs or s3:// URIs")
        idempotency_key = check_idempotency_key(idempotency_key)
        if idempotency_key is not None and (existing := await self.find_job(idempotency_key)):
            return existing
        resolved = [i if isinstance(i, ItemInput) else ItemInput.from_ref(i) for i in inputs]
        new_id = job_id or new_job_id()
        spec_json = spec.model_dump(mode="json")

        async def tx(conn: AsyncConnection) -> None:
            now = time.time()
            await conn.execute(
                jobs.insert().values(
                    id=new_id,
                    state=JobState.queued.value,
                    spec=spec_json,
                    idempotency_key=idempotency_key,
                    total=len(resolved),
                    created_at=now,
                    updated_at=now,
                )
            )
            rows = [_item_row(new_id, seq, item, now) for seq, item in enumerate(resolved)]
            for start in range(0, len(rows), INSERT_CHUNK):
                await conn.execute(items.insert(), rows[start : start + INSERT_CHUNK])

        try:
            await self._run(tx)
        except IntegrityError:
            if idempotency_key is not None and (existing := await self.find_job(idempotency_key)):
                return existing
            raise
        return new_id

    async def find_job(self, idempotency_key: str) -> str | None:
        async def tx(conn: AsyncConnection) -> str | None:
            query = sa.select(jobs.c.id).where(jobs.c.idempotency_key == idempotency_key)
            return (await conn.execute(query)).scalar_one_or_none()

        return await self._run(tx)

    async def get_job(self, job_id: str) -> JobStatus:
        async def tx(conn: AsyncConnection) -> JobStatus:
            return await _status(conn, job_id)

        return await self._run(tx)

    async def list_jobs(self, *, limit: int = 50, offset: int = 0, state: JobState | None = None) -> list[JobStatus]:
        """Jobs, newest first, optionally only those in ``state``."""
        offset, limit = _page(offset, limit)

        async def tx(conn: AsyncConnection) -> list[JobStatus]:
            query = sa.select(jobs).order_by(jobs.c.created_at.desc(), jobs.c.id).limit(limit).offset(offset)
            if state is not None:
                query = query.where(jobs.c.state == JobState(state).value)
            return [_to_status(row) for row in (await conn.execute(query)).mappings()]

        return await self._run(tx)

    async def cancel(self, job_id: str) -> JobStatus:
        """Cancel every image not yet finished; workers holding one lose their lease."""

        async def tx(conn: AsyncConnection) -> JobStatus:
            status = await _status(conn, job_id)
            if status.state in FINISHED_JOB:
                return status
            now = time.time()
            result = await conn.execute(
                items.update()
                .where(items.c.job_id == job_id, items.c.state.in_(OPEN_ITEM))
                .values(state=ItemState.cancelled.value, lease_owner=None, lease_expires_at=None, updated_at=now)
            )
            await conn.execute(
                jobs.update()
                .where(jobs.c.id == job_id)
                .values(
                    state=JobState.cancelled.value,
                    cancelled=jobs.c.cancelled + result.rowcount,
                    message="cancelled on request",
                    updated_at=now,
                    finished_at=now,
                )
            )
            return await _status(conn, job_id)

        return await self._run(tx)

    async def results(self, job_id: str, *, offset: int = 0, limit: int = 100) -> list[ItemResult]:
        """One page of a job's images in submission order, with their result or error."""
        offset, limit = _page(offset, limit)

        async def tx(conn: AsyncConnection) -> list[ItemResult]:
            await _status(conn, job_id)
            query = sa.select(items).where(items.c.job_id == job_id).order_by(items.c.seq).offset(offset).limit(limit)
            return [_to_result(row) for row in (await conn.execute(query)).mappings()]

        return await self._run(tx)

    async def pending(self, job_id: str | None = None) -> int:
        """How many images are queued or being worked on (optionally in one job)."""

        async def tx(conn: AsyncConnection) -> int:
            query = sa.select(sa.func.count()).select_from(items).where(items.c.state.in_(OPEN_ITEM))
            if job_id is not None:
                query = query.where(items.c.job_id == job_id)
            return int((await conn.execute(query)).scalar_one())

        return await self._run(tx)

    async def cleanup(self, older_than_seconds: float) -> list[str]:
        """Delete finished jobs (with their images), cache entries and ledger rows older than this."""
        cutoff = time.time() - older_than_seconds

        async def tx(conn: AsyncConnection) -> list[str]:
            query = sa.select(jobs.c.id).where(
                jobs.c.state.in_([s.value for s in FINISHED_JOB]), jobs.c.finished_at < cutoff
            )
            old = list((await conn.execute(query)).scalars())
            for start in range(0, len(old), INSERT_CHUNK):
                chunk = old[start : start + INSERT_CHUNK]
                await conn.execute(items.delete().where(items.c.job_id.in_(chunk)))
                await conn.execute(jobs.delete().where(jobs.c.id.in_(chunk)))
            await conn.execute(result_cache.delete().where(result_cache.c.created_at < cutoff))
            await conn.execute(deliveries.delete().where(deliveries.c.delivered_at < cutoff))
            return old

        removed = await self._run(tx)
        for jid in removed:
            self._specs.pop(jid, None)
        return removed


def _page(offset: int, limit: int) -> tuple[int, int]:
    """A page's bounds as both databases take them: no row lies past 2^63 - 1, so larger ones are clamped there.

    SQLite's OFFSET and LIMIT are 64-bit signed (a larger Python int overflows the driver) and
    PostgreSQL's are bigint; a negative value is an InputError, not a database error.
    """
    if offset < 0 or limit < 1:
        raise InputError(
            f"a page needs offset >= 0 and limit >= 1, not offset={offset} limit={limit}",
            hint="start at offset 0 with a positive limit",
        )
    return min(offset, MAX_PAGE_OFFSET), min(limit, MAX_PAGE_OFFSET)


def _item_row(job_id: str, seq: int, item: ItemInput, now: float) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "seq": seq,
        "input": item.model_dump(mode="json"),
        "content_hash": item.content_hash,
        "state": ItemState.queued.value,
        "attempts": 0,
        "next_attempt_at": now,
        "updated_at": now,
    }


async def _status(conn: AsyncConnection, job_id: str) -> JobStatus:
    # no id holds a NUL, and PostgreSQL refuses one in a text parameter (a DataError, so a 500)
    query = sa.select(jobs).where(jobs.c.id == job_id)
    row = None if "\x00" in job_id else (await conn.execute(query)).mappings().first()
    if row is None:
        raise NotFound(f"job '{job_id}' does not exist", hint="list jobs to see their ids; old ones are cleaned up")
    return _to_status(row)


def _to_status(row: sa.RowMapping) -> JobStatus:
    return JobStatus(
        id=row["id"],
        state=JobState(row["state"]),
        total=row["total"],
        done=row["done"],
        failed=row["failed"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        message=row["message"],
    )


def _to_result(row: sa.RowMapping) -> ItemResult:
    item = ItemInput.model_validate(row["input"])
    return ItemResult(
        index=row["seq"],
        name=item.name,
        asset_id=item.asset_id,
        state=ItemState(row["state"]),
        attempts=row["attempts"],
        result=Enrichment.model_validate(row["result"]) if row["result"] is not None else None,
        error=ItemError.model_validate(row["error"]) if row["error"] is not None else None,
    )
