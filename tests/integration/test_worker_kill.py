"""A worker SIGKILLed in the middle of a job: a new worker finishes it, nothing done twice."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from descry.jobs.store import ItemState, SqlJobStore
from descry.schemas import JobState
from tests.jobs_helpers import DATABASES, database, path_inputs, spec

pytestmark = pytest.mark.timeout(90)
ROOT = Path(__file__).resolve().parents[2]
SCRIPT = "from tests.jobs_helpers import kill_worker_main; kill_worker_main()"
TOTAL = 200
BLOCK_AFTER = 80
LEASE = 1.0


def _start(url: str, schema: str | None, workdir: Path, block_after: int) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-c", SCRIPT, url, schema or "", str(workdir), str(LEASE), str(block_after)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


async def _wait_for(path: Path, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"worker exited early ({proc.returncode}): {proc.stdout.read().decode()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{path.name} did not appear within {timeout}s")
        await asyncio.sleep(0.02)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.parametrize("kind", DATABASES)
async def test_killed_worker_is_replaced_and_nothing_is_done_twice(kind: str, tmp_path: Path) -> None:
    async with database(kind, tmp_path) as (url, schema):
        store = SqlJobStore(url, schema=schema)
        await store.open()
        try:
            job = await store.create_job(spec(), path_inputs(TOTAL))

            first = _start(url, schema, tmp_path, BLOCK_AFTER)
            await _wait_for(tmp_path / "blocked", first, timeout=30)
            await asyncio.sleep(0.5)  # let images past the enricher finish their delivery
            assert first.poll() is None, "the worker must still be running when it is killed"
            os.kill(first.pid, signal.SIGKILL)
            assert first.wait(10) == -signal.SIGKILL
            assert first.stdout is not None
            first.stdout.close()

            before = await store.get_job(job)
            assert before.state == JobState.running
            assert BLOCK_AFTER - 8 <= before.done < TOTAL
            done_before = {r.name for r in await store.results(job, limit=TOTAL) if r.state == ItemState.done}
            leased = [r for r in await store.results(job, limit=TOTAL) if r.state == ItemState.running]
            assert leased, "the killed worker held leases on the images it was working on"

            second = _start(url, schema, tmp_path, 0)
            out, _ = await asyncio.to_thread(second.communicate, timeout=60)
            assert second.returncode == 0, out.decode()

            after = await store.get_job(job)
            assert (after.state, after.done, after.failed) == (JobState.completed, TOTAL, 0)
            results = await store.results(job, limit=TOTAL + 10)
            expected = path_inputs(TOTAL)
            assert [r.result.name for r in results] == [i.name for i in expected]
            assert [r.result.source for r in results] == [i.uri for i in expected]

            processed = Counter(_lines(tmp_path / "process.log"))
            assert set(processed) == {i.uri for i in expected}
            uri_of = {i.name: i.uri for i in expected}
            assert all(processed[uri_of[name]] == 1 for name in done_before), "finished images ran again"
            assert sum(n - 1 for n in processed.values()) <= len(leased), "only leased images ran twice"

            deliveries = Counter(json.loads(line)["uri"] for line in _lines(tmp_path / "deliveries.log"))
            assert deliveries == Counter({i.uri: 1 for i in expected})
        finally:
            await store.close()
