"""Claims in the SQL store: leasing images to workers, keeping leases alive, and recording how each image ends.

Claims select claimable rows ``FOR UPDATE SKIP LOCKED`` (PostgreSQL: many workers claim disjoint
rows at once; SQLite: one writer at a time), so no image is ever handed to two workers. A claimed
image carries a lease; a worker that dies stops renewing it and the image is claimed again once
the lease expires.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from descry.jobs.inputs import ItemInput
from descry.jobs.records import FINISHED_JOB, ClaimedItem, ItemState
from descry.jobs.sql.connection import SqlConnection
from descry.jobs.tables import items, jobs
from descry.schemas import CaptionRequest, ItemError, JobSpec, JobState


class SqlClaims(SqlConnection):
    """What workers do to images: claim, heartbeat, release, save a result, complete or fail."""

    async def claim(
        self,
        worker_id: str,
        n: int,
        lease_seconds: float,
        *,
        job_id: str | None = None,
        max_attempts: int | None = None,
    ) -> list[ClaimedItem]:
        """Atomically lease up to ``n`` images: queued ones that are due, or ones whose lease expired.

        With ``max_attempts``, an image whose lease expired that many times (its worker keeps
        dying on it) is failed instead of handed out again.
        """
        if n <= 0:
            return []

        async def tx(conn: AsyncConnection) -> list[dict[str, Any]]:
            return await _lease(conn, worker_id, n, lease_seconds, job_id, max_attempts)

        rows = await self._run(tx)
        requests = await self._requests({r["job_id"] for r in rows})
        return [
            ClaimedItem(
                id=r["id"],
                job_id=r["job_id"],
                seq=r["seq"],
                input=ItemInput.model_validate(r["input"]),
                request=requests[r["job_id"]],
                attempts=r["attempts"],
                result=r["result"],
            )
            for r in sorted(rows, key=lambda r: (r["job_id"], r["seq"]))
        ]

    async def _requests(self, job_ids: set[str]) -> dict[str, CaptionRequest]:
        missing = [j for j in job_ids if j not in self._specs]
        if missing:

            async def tx(conn: AsyncConnection) -> list[Any]:
                query = sa.select(jobs.c.id, jobs.c.spec).where(jobs.c.id.in_(missing))
                return list(await conn.execute(query))

            for jid, spec in await self._run(tx):
                self._specs[jid] = JobSpec.model_validate(spec).request
        return {j: self._specs[j] for j in job_ids}

    async def heartbeat(self, worker_id: str, item_ids: Sequence[int], lease_seconds: float) -> set[int]:
        """Extend the leases this worker still holds; returns those ids (the rest were lost)."""
        if not item_ids:
            return set()

        async def tx(conn: AsyncConnection) -> set[int]:
            held = _held(worker_id, item_ids)
            now = time.time()
            await conn.execute(items.update().where(*held).values(lease_expires_at=now + lease_seconds))
            return set((await conn.execute(sa.select(items.c.id).where(*held))).scalars())

        return await self._run(tx)

    async def release(self, worker_id: str, item_ids: Sequence[int]) -> int:
        """Give leased images back to the queue at once, without counting the attempt."""
        if not item_ids:
            return 0

        async def tx(conn: AsyncConnection) -> int:
            now = time.time()
            result = await conn.execute(
                items.update()
                .where(*_held(worker_id, item_ids))
                .values(
                    state=ItemState.queued.value,
                    lease_owner=None,
                    lease_expires_at=None,
                    next_attempt_at=now,
                    attempts=sa.case((items.c.attempts > 0, items.c.attempts - 1), else_=0),
                    updated_at=now,
                )
            )
            return int(result.rowcount)

        return await self._run(tx)

    async def save_result(self, item_id: int, worker_id: str, result: dict[str, Any]) -> bool:
        """Store an image's result before delivery; False if this worker no longer holds it."""

        async def tx(conn: AsyncConnection) -> bool:
            held = _held(worker_id, [item_id])
            await conn.execute(
                items.update().where(*held, items.c.result.is_(None)).values(result=result, updated_at=time.time())
            )
            return (await conn.execute(sa.select(items.c.id).where(*held))).first() is not None

        return await self._run(tx)

    async def complete_item(self, item_id: int, worker_id: str, result: dict[str, Any] | None = None) -> bool:
        """Mark an image done (keeping a result saved earlier); True again if it is already done by us."""

        async def tx(conn: AsyncConnection) -> bool:
            row = await _lock_item(conn, item_id)
            if row is None or row["lease_owner"] != worker_id:
                return False
            if row["state"] == ItemState.done.value:
                return True
            if row["state"] != ItemState.running.value:
                return False
            now = time.time()
            values: dict[str, Any] = {
                "state": ItemState.done.value,
                "error": None,
                "lease_expires_at": None,
                "updated_at": now,
            }
            if row["result"] is None:
                values["result"] = result
            await conn.execute(items.update().where(items.c.id == item_id).values(**values))
            await _count(conn, row["job_id"], now, done=1)
            return True

        return await self._run(tx)

    async def fail_item(
        self, item_id: int, worker_id: str, error: ItemError, *, retry_in: float | None = None
    ) -> ItemState | None:
        """Queue the image again after ``retry_in`` seconds, or fail it for good when that is None.

        Returns the new state, or None when this worker no longer holds the image.
        """

        async def tx(conn: AsyncConnection) -> ItemState | None:
            row = await _lock_item(conn, item_id)
            if row is None or row["lease_owner"] != worker_id or row["state"] != ItemState.running.value:
                return None
            now = time.time()
            base = {"error": error.model_dump(mode="json"), "lease_expires_at": None, "updated_at": now}
            if retry_in is not None:
                await conn.execute(
                    items.update()
                    .where(items.c.id == item_id)
                    .values(state=ItemState.queued.value, lease_owner=None, next_attempt_at=now + retry_in, **base)
                )
                return ItemState.queued
            await conn.execute(items.update().where(items.c.id == item_id).values(state=ItemState.failed.value, **base))
            await _count(conn, row["job_id"], now, failed=1)
            return ItemState.failed

        return await self._run(tx)


async def _lease(
    conn: AsyncConnection,
    worker_id: str,
    n: int,
    lease_seconds: float,
    job_id: str | None,
    max_attempts: int | None,
) -> list[dict[str, Any]]:
    """Lock up to ``n`` claimable images (expired leases first), lease them to ``worker_id``, return their rows."""
    now = time.time()
    scope = [items.c.job_id == job_id] if job_id is not None else []
    expired = [items.c.state == ItemState.running.value, items.c.lease_expires_at < now, *scope]
    if max_attempts is not None:
        await _fail_lost(conn, expired, max_attempts, now)
    ids = await _lock_ids(conn, expired, items.c.lease_expires_at, n)
    if len(ids) < n:
        due = [items.c.state == ItemState.queued.value, items.c.next_attempt_at <= now, *scope]
        ids += await _lock_ids(conn, due, items.c.next_attempt_at, n - len(ids))
    if not ids:
        return []
    await conn.execute(
        items.update()
        .where(items.c.id.in_(ids))
        .values(
            state=ItemState.running.value,
            lease_owner=worker_id,
            lease_expires_at=now + lease_seconds,
            attempts=items.c.attempts + 1,
            updated_at=now,
        )
    )
    rows = [dict(r) for r in (await conn.execute(sa.select(items).where(items.c.id.in_(ids)))).mappings()]
    for jid in sorted({r["job_id"] for r in rows}):
        await conn.execute(
            jobs.update()
            .where(jobs.c.id == jid, jobs.c.state == JobState.queued.value)
            .values(state=JobState.running.value, updated_at=now)
        )
    return rows


def _held(worker_id: str, item_ids: Sequence[int]) -> list[sa.ColumnElement[bool]]:
    return [
        items.c.id.in_(list(item_ids)),
        items.c.lease_owner == worker_id,
        items.c.state == ItemState.running.value,
    ]


async def _lock_ids(conn: AsyncConnection, where: list[Any], order: sa.Column[Any], n: int) -> list[int]:
    query = sa.select(items.c.id).where(*where).order_by(order, items.c.id).limit(n).with_for_update(skip_locked=True)
    return list((await conn.execute(query)).scalars())


async def _lock_item(conn: AsyncConnection, item_id: int) -> sa.RowMapping | None:
    query = sa.select(items).where(items.c.id == item_id).with_for_update()
    return (await conn.execute(query)).mappings().first()


async def _fail_lost(conn: AsyncConnection, expired: list[Any], max_attempts: int, now: float) -> None:
    """Fail images whose workers died on them ``max_attempts`` times instead of claiming them again."""
    query = (
        sa.select(items.c.id, items.c.job_id, items.c.input, items.c.attempts)
        .where(*expired, items.c.attempts >= max_attempts)
        .limit(100)
        .with_for_update(skip_locked=True)
    )
    for row in (await conn.execute(query)).mappings().all():
        error = ItemError(
            name=row["input"].get("name", ""),
            code="worker_lost",
            message=f"the worker stopped while processing this image {row['attempts']} times "
            "(crash or out-of-memory kill); check the worker logs, or lower the image size limits",
        )
        await conn.execute(
            items.update()
            .where(items.c.id == row["id"])
            .values(
                state=ItemState.failed.value,
                error=error.model_dump(mode="json"),
                lease_expires_at=None,
                updated_at=now,
            )
        )
        await _count(conn, row["job_id"], now, failed=1)


async def _count(conn: AsyncConnection, job_id: str, now: float, *, done: int = 0, failed: int = 0) -> None:
    """Update a job's counters and, once every image is finished, its final state."""
    await conn.execute(
        jobs.update()
        .where(jobs.c.id == job_id)
        .values(done=jobs.c.done + done, failed=jobs.c.failed + failed, updated_at=now)
    )
    row = (await conn.execute(sa.select(jobs).where(jobs.c.id == job_id))).mappings().one()
    if JobState(row["state"]) in FINISHED_JOB or row["done"] + row["failed"] + row["cancelled"] < row["total"]:
        return
    if row["failed"] == 0:
        state, message = JobState.completed, None
    elif row["done"] > 0:
        state, message = JobState.completed_with_errors, f"{row['failed']} of {row['total']} images failed"
    else:
        state, message = JobState.failed, "every image failed; the results show each error"
    await conn.execute(
        jobs.update().where(jobs.c.id == job_id).values(state=state.value, message=message, finished_at=now)
    )
