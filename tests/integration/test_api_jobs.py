"""/v1/jobs: durable jobs over HTTP, with idempotency, paging, cancel and server paths."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx

from descry.config import Settings
from tests.api_helpers import api_settings, jpeg, serve, upload
from tests.fakes.echo_backend import EchoBackend


async def finished(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    for _ in range(200):
        job = (await client.get(f"/v1/jobs/{job_id}")).json()
        if job["state"] not in ("queued", "running"):
            return job
        await asyncio.sleep(0.05)
    raise AssertionError("job did not finish")


async def test_upload_job_runs_pages_and_is_idempotent(settings: Settings) -> None:
    files = [upload(f"{i}.jpg", jpeg((30 + i, 10))) for i in range(5)]
    async with serve(api_settings(settings), EchoBackend()) as (client, _app):
        first = await client.post("/v1/jobs", files=files, data={"sinks": ""}, headers={"Idempotency-Key": "abc"})
        assert first.status_code == 202, first.text
        job_id = first.json()["id"]
        again = await client.post("/v1/jobs", files=files[:1], headers={"Idempotency-Key": "abc"})
        assert again.json()["id"] == job_id
        job = await finished(client, job_id)
        assert (job["state"], job["total"], job["done"]) == ("completed", 5, 5)
        page = (await client.get(f"/v1/jobs/{job_id}/results", params={"offset": 2, "limit": 2})).json()
        assert [item["name"] for item in page["items"]] == ["2.jpg", "3.jpg"]
        assert page["items"][0]["result"]["caption"].startswith("32x10")
        listed = (await client.get("/v1/jobs")).json()
        assert [j["id"] for j in listed] == [job_id]
        missing = await client.get("/v1/jobs/does-not-exist")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


async def test_json_job_reads_server_paths_only_inside_roots(settings: Settings, tmp_path: Path) -> None:
    root = tmp_path / "library"
    (root / "sub").mkdir(parents=True)
    for name in ("a.jpg", "sub/b.jpg"):
        (root / name).write_bytes(jpeg((40, 20)))
    config = api_settings(settings, sources={"allowed_roots": [str(root)]})
    async with serve(config, EchoBackend()) as (client, _app):
        ok = await client.post("/v1/jobs", json={"sources": [str(root)], "tags": False})
        assert ok.status_code == 202, ok.text
        job = await finished(client, ok.json()["id"])
        assert (job["total"], job["done"]) == (2, 2)
        outside = await client.post("/v1/jobs", json={"sources": ["/etc/passwd"]})
        assert outside.status_code == 403
        empty = await client.post("/v1/jobs", json={"sources": []})
        assert empty.status_code == 422


async def test_cancel_stops_a_job(settings: Settings) -> None:
    files = [upload(f"{i}.jpg", jpeg((30 + i, 10))) for i in range(20)]
    config = api_settings(settings, model={"batch_size": 1})
    async with serve(config, EchoBackend(delay=0.2)) as (client, _app):
        job_id = (await client.post("/v1/jobs", files=files, data={"sinks": ""})).json()["id"]
        cancelled = await client.delete(f"/v1/jobs/{job_id}")
        assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
        job = await finished(client, job_id)
        assert job["state"] == "cancelled" and job["done"] < 20


async def test_an_unknown_sink_is_refused_at_submission(settings: Settings, tmp_path: Path) -> None:
    out = tmp_path / "defaults.jsonl"
    config = api_settings(settings, sinks={"jsonl_path": out, "default": ["jsonl"]})
    async with serve(config, EchoBackend()) as (client, _app):
        refused = await client.post("/v1/jobs", files=[upload("a.jpg", jpeg())], data={"sinks": "log,carrier-pigeon"})
        seed = await client.post("/async-batch-caption", files=[upload("a.jpg", jpeg())])
        assert seed.status_code == 202, seed.text
        plain = await client.post("/v1/jobs", files=[upload("b.jpg", jpeg())])
        assert plain.status_code == 202
        await finished(client, plain.json()["id"])
        jobs = (await client.get("/v1/jobs")).json()
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["code"] == "invalid_input" and "jsonl" in refused.json()["error"]["message"]
    assert len(jobs) == 2  # the refused job was never stored
    assert {json.loads(line)["name"] for line in out.read_text().splitlines()} >= {"b.jpg"}
