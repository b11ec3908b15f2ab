"""Jobs wired to Descry and its sinks, and the `descry jobs` commands on the same store."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from descry.config import Settings
from descry.core import Descry
from descry.engine.pipeline import Engine
from descry.jobs.service import JobService
from descry.schemas import CaptionRequest, JobState
from tests.conftest import image_bytes
from tests.fakes.echo_backend import EchoBackend


async def test_uploads_become_a_job_that_workers_finish_and_deliver(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    files = [(f"img{i}.png", image_bytes("PNG", (20 + i, 10))) for i in range(5)]
    files.append(("bad.png", b"not an image at all"))
    caplog.set_level(logging.INFO, logger="descry.mam")
    async with Descry(settings, engine=Engine(settings, backend=EchoBackend())) as descry:
        service = JobService(settings, descry)
        await service.open()
        job_id = await service.submit(CaptionRequest(asset_id="shoot-1"), files, idempotency_key="k1")
        assert await service.submit(CaptionRequest(), files[:1], idempotency_key="k1") == job_id
        queued = await service.store.get_job(job_id)
        assert (queued.state, queued.total) == (JobState.queued, 6)
        await service.worker().run_until_idle(job_id)
        status = await service.store.get_job(job_id)
        rows = await service.store.results(job_id, limit=10)
        await service.close()
    assert status.state is JobState.completed_with_errors
    assert (status.done, status.failed) == (5, 1)
    assert [r.name for r in rows] == [name for name, _ in files]
    assert [r.result.caption.split()[0] for r in rows[:5]] == [f"{20 + i}x10" for i in range(5)]
    assert rows[5].error.code == "unsupported_format"
    delivered = [r for r in caplog.records if r.getMessage().startswith("[MAM] Updated asset")]
    assert len(delivered) == 5


def test_jobs_cli_lists_shows_and_pages_results(tmp_path: Path, settings: Settings) -> None:
    import asyncio

    async def make() -> str:
        async with Descry(settings, engine=Engine(settings, backend=EchoBackend())) as descry:
            service = JobService(settings, descry)
            await service.open()
            job_id = await service.submit(CaptionRequest(sinks=[]), [("a.png", image_bytes("PNG"))] * 3)
            await service.worker().run_until_idle(job_id)
            await service.close()
            return job_id

    job_id = asyncio.run(make())
    env = {**os.environ, "DESCRY_DATA_DIR": str(settings.data_dir)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "descry.cli", "jobs", *args], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)

    listed = json.loads(cli("list", "--json").stdout)
    assert [j["id"] for j in listed] == [job_id]
    assert json.loads(cli("show", job_id).stdout)["done"] == 3
    page = cli("results", job_id, "--offset", "1", "--limit", "5").stdout.splitlines()
    assert len(page) == 2
    missing = cli("show", "nope")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


async def test_workers_read_server_paths_only_inside_the_allowed_roots(settings: Settings, tmp_path: Path) -> None:
    from descry.sources import TrustPolicy, path_ref

    inside, outside = tmp_path / "allowed" / "in.png", tmp_path / "elsewhere" / "out.png"
    for path in (inside, outside):
        path.parent.mkdir()
        path.write_bytes(image_bytes("PNG"))
    settings = settings.model_copy(
        update={"sources": settings.sources.model_copy(update={"allowed_roots": [inside.parent]})}
    )
    engine = Engine(settings, backend=EchoBackend())
    async with Descry(settings, engine=engine, policy=TrustPolicy.network(settings.sources)) as descry:
        service = JobService(settings, descry)
        await service.open()
        job_id = await service.submit(CaptionRequest(sinks=[]), others=[path_ref(inside), path_ref(outside)])
        await service.worker().run_until_idle(job_id)
        rows = await service.store.results(job_id, limit=10)
        await service.close()
    assert rows[0].result is not None
    assert rows[1].error is not None and rows[1].error.code == "forbidden_source"
