"""The store's connection: the async engine, schema migrations on open, and transactions that retry contention.

Every SQLite transaction starts with ``BEGIN IMMEDIATE`` (one writer at a time, WAL so readers
never block); PostgreSQL runs many transactions at once and its claims skip locked rows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Self, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from descry.errors import ConfigError, MissingDependency
from descry.jobs.migrate import upgrade
from descry.schemas import CaptionRequest

T = TypeVar("T")


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


class SqlConnection:
    """Opens and closes the engine and runs each unit of work in one retried transaction."""

    def __init__(self, url: str, *, schema: str | None = None, busy_timeout: float = 30.0) -> None:
        self.url = normalise_url(url)
        self.schema = schema
        self.busy_timeout = busy_timeout
        self._engine: AsyncEngine | None = None
        self._specs: dict[str, CaptionRequest] = {}  # job id -> its request, read once per process

    @property
    def dialect(self) -> str:
        return make_url(self.url).get_backend_name()

    @property
    def engine(self) -> AsyncEngine:
        """The open engine (for migrations checks and admin tools)."""
        if self._engine is None:
            raise ConfigError("the job store is not open", hint="await store.open() before using it")
        return self._engine

    async def open(self) -> None:
        """Connect, and create or upgrade the schema with the shipped Alembic migrations."""
        if self._engine is not None:
            return
        engine = self._make_engine()
        try:
            async with engine.begin() as conn:
                await upgrade(conn, schema=self.schema)
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

    async def __aenter__(self) -> Self:
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


def _transient(exc: DBAPIError) -> bool:
    """Lock contention worth retrying: SQLite busy, PostgreSQL deadlock or serialisation failure."""
    if isinstance(exc, IntegrityError):
        return False
    text = str(exc.orig).lower()
    if "database is locked" in text or "database is busy" in text:
        return True
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return code in ("40P01", "40001")


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
