"""The durable job store: jobs, their images, leases, results, a result cache and a delivery ledger.

``SqlJobStore`` serves SQLite (the embedded default) and PostgreSQL with one code path:

* claims select claimable rows ``FOR UPDATE SKIP LOCKED`` (PostgreSQL: many workers claim
  disjoint rows at once) and every SQLite transaction starts with ``BEGIN IMMEDIATE`` (one
  writer at a time, WAL so readers never block), so no image is ever handed to two workers;
* a claimed image carries a lease; a worker that dies stops renewing it and the image is
  claimed again once the lease expires;
* the schema is created and upgraded by the Alembic migrations shipped in ``migrations/``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from descry.errors import ConfigError, InputError, MissingDependency, NotFound
from descry.jobs.inputs import ItemInput, new_job_id, remove_uploads, save_uploads
from descry.schemas import CaptionRequest, Enrichment, ImageRef, ItemError, JobSpec, JobState, JobStatus

try:
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import DBAPIError, IntegrityError
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingDependency("sqlalchemy", "jobs") from exc

from descry.jobs.models import deliveries, items, jobs, result_cache

MIGRATIONS = Path(__file__).with_name("migrations")
MIGRATION_LOCK = 0x64657363  # pg_advisory_xact_lock key serialising concurrent upgrades
INSERT_CHUNK = 1000
T = TypeVar("T")


class ItemState(str, Enum):
    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"
    cancelled = "cancelled"


FINISHED_JOB = (JobState.completed, JobState.completed_with_errors, JobState.failed, JobState.cancelled)
OPEN_ITEM = (ItemState.queued.value, ItemState.running.value)


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


class JobStore(Protocol):
    """What workers, the API and the CLI need from a job store."""

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def create_job(
        self,
        spec: JobSpec,
        inputs: Sequence[ItemInput | ImageRef],
        *,
        idempotency_key: str | None = None,
        job_id: str | None = None,
    ) -> str: ...
    async def find_job(self, idempotency_key: str) -> str | None: ...
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


def normalise_url(url: str) -> str:
    """Pick the async driver for plain ``sqlite://`` and ``postgresql://`` URLs."""
    parsed = make_url(url)
    backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    if backend == "sqlite" and driver != "aiosqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif backend in ("postgresql", "postgres") and driver != "asyncpg":
        parsed = parsed.set(drivername="postgresql+asyncpg")
    elif backend not in ("sqlite", "postgresql", "postgres"):
        raise ConfigError(
            f"unsupported job database '{backend}'",
            hint="set DESCRY_JOBS__DATABASE_URL to sqlite+aiosqlite:///path.db or postgresql+asyncpg://...",
        )
    return parsed.render_as_string(hide_password=False)


def _transient(exc: DBAPIError) -> bool:
    """Lock contention worth retrying: SQLite busy, PostgreSQL deadlock or serialisation failure."""
    if isinstance(exc, IntegrityError):
        return False
    text = str(exc.orig).lower()
    if "database is locked" in text or "database is busy" in text:
        return True
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return code in ("40P01", "40001")


class SqlJobStore:
    """The job store on SQLite or PostgreSQL through SQLAlchemy's async engine."""

    def __init__(self, url: str, *, schema: str | None = None, busy_timeout: float = 30.0) -> None:
        self.url = normalise_url(url)
        self.schema = schema
        self.busy_timeout = busy_timeout
        self._engine: AsyncEngine | None = None
        self._specs: dict[str, CaptionRequest] = {}

    @property
    def dialect(self) -> str:
        return make_url(self.url).get_backend_name()

    @property
    def engine(self) -> AsyncEngine:
        """The open engine (for migrations checks and admin tools)."""
        if self._engine is None:
            raise ConfigError("the job store is not open", hint="await store.open() before using it")
        return self._engine

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, and create or upgrade the schema with the shipped Alembic migrations."""
        if self._engine is not None:
            return
        engine = self._make_engine()
        try:
            async with engine.begin() as conn:
                if self.dialect == "postgresql":
                    await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})
                    if self.schema:
                        quoted = conn.dialect.identifier_preparer.quote_schema(self.schema)
                        await conn.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {quoted}"))
                await conn.run_sync(_upgrade)
        except (OSError, DBAPIError) as exc:
            await engine.dispose()
            raise ConfigError(
                f"cannot open the job database {make_url(self.url).render_as_string()}: {exc}",
                hint="check DESCRY_JOBS__DATABASE_URL and that the database server is running",
            ) from exc
        self._engine = engine

    def _make_engine(self) -> AsyncEngine:
        url = make_url(self.url)
        connect_args: dict[str, Any] = {}
        if self.dialect == "sqlite":
            if self.schema:
                raise ConfigError("SQLite has no schemas", hint="unset DESCRY_JOBS__DATABASE_SCHEMA")
            if url.database and url.database != ":memory:":
                Path(url.database).parent.mkdir(parents=True, exist_ok=True)
            connect_args["timeout"] = self.busy_timeout
        elif self.schema:
            connect_args["server_settings"] = {"search_path": self.schema}
        try:
            engine = create_async_engine(self.url, connect_args=connect_args, pool_pre_ping=True)
        except ImportError as exc:
            driver = "aiosqlite" if self.dialect == "sqlite" else "asyncpg"
            raise MissingDependency(driver, "jobs") from exc
        if self.dialect == "sqlite":
            _sqlite_pragmas(engine, int(self.busy_timeout * 1000))
        return engine

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    async def __aenter__(self) -> SqlJobStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _run(self, fn: Callable[[AsyncConnection], Awaitable[T]], retries: int = 6) -> T:
        """Run ``fn`` in one transaction, retrying lock contention with a short backoff."""
        engine = self.engine
        for attempt in range(retries):
            try:
                async with engine.begin() as conn:
                    return await fn(conn)
            except DBAPIError as exc:
                if attempt == retries - 1 or not _transient(exc):
                    raise
                await asyncio.sleep(0.02 * 2**attempt)
        raise AssertionError("unreachable")

    # -- jobs ------------------------------------------------------------------------------

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
        if idempotency_key and (existing := await self.find_job(idempotency_key)):
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
            if idempotency_key and (existing := await self.find_job(idempotency_key)):
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

    # -- items -----------------------------------------------------------------------------

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

    # -- result cache and delivery ledger --------------------------------------------------

    async def cache_get(self, content_hash: str, model: str, params_hash: str) -> dict[str, Any] | None:
        async def tx(conn: AsyncConnection) -> dict[str, Any] | None:
            query = sa.select(result_cache.c.enrichment).where(
                result_cache.c.content_hash == content_hash,
                result_cache.c.model == model,
                result_cache.c.params_hash == params_hash,
            )
            return (await conn.execute(query)).scalar_one_or_none()

        return await self._run(tx)

    async def cache_put(self, content_hash: str, model: str, params_hash: str, enrichment: dict[str, Any]) -> bool:
        """Remember an enrichment; False if one was already cached for this key (the first one stays)."""
        row = {
            "content_hash": content_hash,
            "model": model,
            "params_hash": params_hash,
            "enrichment": enrichment,
            "created_at": time.time(),
        }
        return await self._insert_once(result_cache, row)

    async def is_delivered(self, idempotency_key: str) -> bool:
        async def tx(conn: AsyncConnection) -> bool:
            query = sa.select(deliveries.c.idempotency_key).where(deliveries.c.idempotency_key == idempotency_key)
            return (await conn.execute(query)).first() is not None

        return await self._run(tx)

    async def record_delivery(self, idempotency_key: str, sink: str) -> bool:
        """Record a delivery in the ledger; True the first time for this key, False afterwards."""
        row = {"idempotency_key": idempotency_key, "sink": sink, "delivered_at": time.time()}
        return await self._insert_once(deliveries, row)

    async def _insert_once(self, table: sa.Table, row: dict[str, Any]) -> bool:
        async def tx(conn: AsyncConnection) -> bool:
            await conn.execute(table.insert().values(**row))
            return True

        try:
            return await self._run(tx)
        except IntegrityError:
            return False

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


async def submit_uploads(
    store: JobStore,
    data_dir: Path,
    spec: JobSpec,
    files: Sequence[ImageRef | tuple[str, bytes]],
    *,
    others: Sequence[ItemInput | ImageRef] = (),
    idempotency_key: str | None = None,
) -> str:
    """Save uploaded files under ``data_dir/uploads/<job_id>/`` and create their job.

    ``others`` (paths, URLs, s3 URIs) join the same job after the uploads. A known idempotency
    key returns the existing job without saving anything; a failed create removes the files.
    """
    if idempotency_key and (existing := await store.find_job(idempotency_key)):
        return existing
    job_id = new_job_id()
    inputs = await asyncio.to_thread(save_uploads, data_dir, job_id, files)
    try:
        created = await store.create_job(spec, [*inputs, *others], idempotency_key=idempotency_key, job_id=job_id)
    except BaseException:
        await asyncio.to_thread(remove_uploads, data_dir, job_id)
        raise
    if created != job_id:
        await asyncio.to_thread(remove_uploads, data_dir, job_id)
    return created


# -- helpers -------------------------------------------------------------------------------


def _upgrade(sync_conn: sa.Connection) -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, "head")


def _sqlite_pragmas(engine: AsyncEngine, busy_ms: int) -> None:
    """WAL, a busy timeout, and BEGIN IMMEDIATE so each transaction takes the write lock up front."""

    @sa.event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @sa.event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


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


async def _status(conn: AsyncConnection, job_id: str) -> JobStatus:
    row = (await conn.execute(sa.select(jobs).where(jobs.c.id == job_id))).mappings().first()
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
