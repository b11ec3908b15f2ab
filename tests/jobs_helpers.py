"""Shared helpers for the job store and worker tests: databases, a fake enricher, fast settings."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from descry.config import JobSettings
from descry.jobs.inputs import ItemInput
from descry.jobs.store import SqlJobStore
from descry.schemas import CaptionRequest, Enrichment, JobSpec, SourceKind, Tag

PG_URL = os.environ.get("DESCRY_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
DATABASES = ["sqlite", "postgresql"]


def _pg_dsn() -> str:
    return PG_URL.replace("postgresql+asyncpg://", "postgresql://")


async def _pg_reachable() -> bool:
    import asyncpg

    try:
        conn = await asyncpg.connect(_pg_dsn(), timeout=3)
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


@asynccontextmanager
async def database(kind: str, tmp_path: Path) -> AsyncIterator[tuple[str, str | None]]:
    """A fresh database for one test: an SQLite file, or a PostgreSQL schema dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'jobs.db'}", None
        return
    if not await _pg_reachable():
        # CI starts PostgreSQL (.ci/run), so there a missing server is a failure, not a skip
        missing = pytest.fail if os.environ.get("CI") else pytest.skip
        missing(f"PostgreSQL is not reachable at {PG_URL} (set DESCRY_TEST_PG_URL to run these tests)")
    schema = f"descry_test_{uuid.uuid4().hex[:12]}"
    try:
        yield PG_URL, schema
    finally:
        import asyncpg

        conn = await asyncpg.connect(_pg_dsn())
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


@asynccontextmanager
async def open_store(kind: str, tmp_path: Path) -> AsyncIterator[SqlJobStore]:
    async with database(kind, tmp_path) as (url, schema):
        store = SqlJobStore(url, schema=schema)
        await store.open()
        try:
            yield store
        finally:
            await store.close()


def fast_settings(**overrides: object) -> JobSettings:
    """Settings that make tests quick: short leases, tiny backoff, fast polling."""
    values: dict[str, object] = {
        "lease_seconds": 5.0,
        "backoff_base": 0.01,
        "backoff_max": 0.05,
        "poll_interval": 0.02,
        "concurrency": 4,
        "claim_batch": 4,
        "drain_seconds": 5.0,
    }
    values.update(overrides)
    return JobSettings(**values)


def path_inputs(n: int, prefix: str = "img") -> list[ItemInput]:
    return [
        ItemInput(kind=SourceKind.path, uri=f"/images/{prefix}{i:04d}.jpg", name=f"{prefix}{i:04d}.jpg")
        for i in range(n)
    ]


def spec(**request: object) -> JobSpec:
    return JobSpec(request=CaptionRequest(**request))


def fake_enrichment(item: ItemInput, request: CaptionRequest) -> Enrichment:
    """An Enrichment derived only from the input, so tests can check which image it belongs to."""
    return Enrichment(
        name=item.name,
        asset_id=item.asset_id or request.asset_id,
        caption=f"caption for {item.name}",
        tags=[Tag(name=Path(item.uri).stem, source="fake")],
        source=item.uri,
        params={"detail": request.detail},
    )


class FakeEnricher:
    """Records every call; optional per-name exceptions raised on the first N calls."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls: list[str] = []
        self.raises: dict[str, list[BaseException]] = {}

    async def __call__(self, item: ItemInput, request: CaptionRequest) -> Enrichment:
        self.calls.append(item.uri)
        if self.delay:
            await asyncio.sleep(self.delay)
        errors = self.raises.get(item.name)
        if errors:
            raise errors.pop(0)
        return fake_enrichment(item, request)


# -- the worker the kill test runs in a subprocess ------------------------------------------


async def _kill_worker(url: str, schema: str | None, workdir: Path, lease: float, block_after: int) -> None:
    """Process with a fake slow enricher; after ``block_after`` calls every new call hangs."""
    store = SqlJobStore(url, schema=schema)
    await store.open()
    calls = workdir / "process.log"
    delivered = workdir / "deliveries.log"
    started = 0

    async def process(item: ItemInput, request: CaptionRequest) -> Enrichment:
        nonlocal started
        started += 1
        with open(calls, "a") as fh:
            fh.write(item.uri + "\n")
        if block_after and started > block_after:
            (workdir / "blocked").touch()
            await asyncio.sleep(3600)
        await asyncio.sleep(0.005)
        return fake_enrichment(item, request)

    async def deliver(enrichment: Enrichment, item: ItemInput) -> None:
        with open(delivered, "a") as fh:
            fh.write(json.dumps({"uri": item.uri, "caption": enrichment.caption}) + "\n")

    from descry.jobs.worker import Worker

    settings = fast_settings(lease_seconds=lease, concurrency=4, claim_batch=4)
    worker = Worker(store, process, settings=settings, deliver={"file": deliver}, worker_id=f"w-{os.getpid()}")
    await worker.run_until_idle()
    await store.close()


def kill_worker_main() -> None:
    """``python -c 'from tests.jobs_helpers import kill_worker_main; kill_worker_main()' URL SCHEMA DIR LEASE N``."""
    url, schema, workdir = sys.argv[1], sys.argv[2] or None, Path(sys.argv[3])
    asyncio.run(_kill_worker(url, schema, workdir, float(sys.argv[4]), int(sys.argv[5])))
