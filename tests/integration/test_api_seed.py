"""The seed-compatible routes keep their paths, fields and shapes."""

from __future__ import annotations

import asyncio
import http.server
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from descry.api.app import create_app
from descry.config import Settings
from descry.engine.pipeline import Engine
from tests.api_helpers import api_settings, jpeg, serve, upload
from tests.fakes.echo_backend import EchoBackend
from tests.fakes.openai_server import FakeOpenAIServer, Rule

POLISHED = "A small red test card with a faint grid of coloured dots on it."


@pytest.fixture
def image_server() -> Iterator[str]:
    """A local HTTP server answering /photo.jpg with a 32x24 JPEG."""
    data = jpeg((32, 24))

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200 if self.path == "/photo.jpg" else 404)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.path == "/photo.jpg":
                self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


async def test_infer(settings: Settings) -> None:
    async with serve(api_settings(settings)) as (client, _app):
        response = await client.post("/infer", files={"file": ("a.jpg", jpeg((40, 30)), "image/jpeg")})
        missing = await client.post("/infer", data={"x": "1"})
    assert response.status_code == 200
    assert set(response.json()) == {"caption"} and response.json()["caption"].startswith("40x30")
    assert missing.status_code == 422 and missing.json()["error"]["code"] == "validation_error"


async def test_api_enrich_pushes_to_the_mam_log(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="descry.mam")
    async with serve(api_settings(settings)) as (client, _app):
        response = await client.post(
            "/api/enrich", files={"file": ("a.jpg", jpeg(), "image/jpeg")}, data={"asset_id": "asset-42"}
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert {"caption", "tags", "source", "reasoning_trace"} <= set(body)
    assert all(isinstance(tag, str) for tag in body["tags"])
    assert body["source"] == "echo" and body["reasoning_trace"]
    assert body["delivery"] == {"log": None}
    lines = [r.getMessage() for r in caplog.records if r.name == "descry.mam"]
    assert len(lines) == 1 and lines[0].startswith("[MAM] Updated asset asset-42 with metadata: ")
    metadata = json.loads(lines[0].split("metadata: ", 1)[1])
    assert metadata["caption"] == body["caption"]


async def test_caption_upload_shape(settings: Settings) -> None:
    async with serve(api_settings(settings)) as (client, _app):
        response = await client.post("/caption", files={"file": ("pic.png", jpeg((50, 20)), "image/png")})
        detailed = await client.post(
            "/caption", files={"file": ("pic.png", jpeg((50, 20)), "image/png")}, data={"detailed": "maybe"}
        )
    body = response.json()
    assert set(body) == {"filename", "caption", "tags", "processing_time"}
    assert body["filename"] == "pic.png" and body["caption"].startswith("50x20")
    assert isinstance(body["processing_time"], float) and body["processing_time"] >= 0
    assert detailed.status_code == 400 and "boolean" in detailed.json()["error"]["message"]


async def test_caption_json_url_and_enhancement(settings: Settings, image_server: str) -> None:
    model = "openai/gpt-oss-20b"
    with FakeOpenAIServer(models=[model]) as llm:
        llm.add(Rule(reply=POLISHED))
        config = api_settings(
            settings,
            sources={"url_allowlist": ["127.0.0.1"]},
            enhance={"model": model, "base_url": llm.base_url, "timeout": 5.0, "max_retries": 0},
        )
        async with serve(config) as (client, _app):
            plain = await client.post("/caption", json={"url": f"{image_server}/photo.jpg"})
            polished = await client.post(
                "/caption", json={"url": f"{image_server}/photo.jpg", "detailed": True, "use_gpt_oss": True}
            )
            missing = await client.post("/caption", json={"url": f"{image_server}/gone.jpg"})
            s3_bad = await client.post("/caption", json={"s3_uri": "s3://UPPER/key.jpg"})
            neither = await client.post("/caption", json={"detailed": True})
    assert plain.status_code == 200, plain.text
    assert plain.json() == {"caption": plain.json()["caption"], "enhanced": False, "s3_uri": None}
    assert plain.json()["caption"].startswith("32x24")
    assert polished.status_code == 200, polished.text
    body = polished.json()
    assert body["enhanced"] is True and body["caption"] == POLISHED
    assert body["original_caption"].startswith("32x24")
    assert missing.status_code == 404
    assert s3_bad.status_code == 400 and s3_bad.json()["error"]["code"] == "invalid_input"
    assert neither.status_code == 422


async def test_batch_caption_shape(settings: Settings) -> None:
    files = [
        upload("a.jpg", jpeg((20, 10))),
        upload("b.txt", b"hello", "text/plain"),
        upload("c.jpg", jpeg((30, 10))),
    ]
    async with serve(api_settings(settings)) as (client, _app):
        response = await client.post("/batch-caption", files=files)
    body = response.json()
    assert set(body) == {"results", "total_processing_time"}
    assert [r["image_path"] for r in body["results"]] == ["a.jpg", "b.txt", "c.jpg"]
    assert body["results"][0]["caption"].startswith("20x10") and body["results"][2]["caption"].startswith(
        "30x10"
    )
    assert (
        body["results"][1]["caption"] is None and body["results"][1]["error"]["code"] == "unsupported_format"
    )
    assert all(isinstance(r["tags"], list) for r in body["results"])


async def _poll(client: httpx.AsyncClient, task_id: str, timeout: float = 10.0) -> dict[str, Any]:
    for _ in range(int(timeout / 0.05)):
        body: dict[str, Any] = (await client.get(f"/async-batch-caption/status/{task_id}")).json()
        if body["status"] in ("completed", "failed"):
            return body
        await asyncio.sleep(0.05)
    raise AssertionError("the batch did not finish")


async def test_async_batch_saves_files_then_reports_progress_and_results(settings: Settings) -> None:
    config = api_settings(settings, model={"batch_size": 1}, server={"batch_concurrency": 1})
    files = [upload(f"{i}.jpg", jpeg((20 + i, 10))) for i in range(4)] + [
        upload("bad.jpg", jpeg((80, 80))[:300])
    ]
    async with serve(config, EchoBackend(delay=0.05)) as (client, _app):
        response = await client.post("/async-batch-caption", files=files)
        assert response.status_code == 202
        body = response.json()
        assert set(body) == {"message", "task_id"}
        task_id = body["task_id"]
        saved = sorted(
            p.name for p in (settings.data_dir / "uploads" / task_id).iterdir() if p.suffix == ".jpg"
        )
        assert len(saved) == 5 and saved[0].startswith("0000")
        first = (await client.get(f"/async-batch-caption/status/{task_id}")).json()
        assert first["status"] in ("pending", "processing") and first["result"] is None
        assert first["progress"]["total"] == 5
        final = await _poll(client, task_id)
    assert final["status"] == "completed" and final["message"].startswith("Processed 5/5")
    assert final["progress"] == {"total": 5, "done": 5, "failed": 1}
    results = final["result"]
    assert set(final) == {"task_id", "status", "message", "result", "progress"}
    assert all(set(r) == {"image_path", "caption", "tags"} for r in results[:4])
    assert [r["image_path"] for r in results] == ["0.jpg", "1.jpg", "2.jpg", "3.jpg", "bad.jpg"]
    assert [r["caption"].split()[0] for r in results[:4]] == ["20x10", "21x10", "22x10", "23x10"]
    assert results[4]["error"]["code"] == "corrupt_image"
    assert results[4]["caption"] is None and results[4]["tags"] == []

    async with serve(config) as (client, _app):  # a restarted server still answers
        again = (await client.get(f"/async-batch-caption/status/{task_id}")).json()
        unknown = await client.get("/async-batch-caption/status/0123456789abcdef0123456789abcdef")
        junk = await client.get("/async-batch-caption/status/..%2F..%2Fetc")
    assert again["result"] == final["result"] and again["status"] == "completed"
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    assert junk.status_code == 404


async def test_unfinished_batch_resumes_after_a_restart(settings: Settings) -> None:
    config = api_settings(settings)
    files = [upload(f"{i}.jpg", jpeg((20 + i, 12))) for i in range(3)]
    backend = EchoBackend(delay=1.0)
    app = create_app(config, engine=Engine(config, backend=backend))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            while not app.state.engine.ready:
                await asyncio.sleep(0.01)
            task_id = (await client.post("/async-batch-caption", files=files)).json()["task_id"]
            await asyncio.sleep(0.2)  # processing has started; the server now stops mid-batch
            before = (await client.get(f"/async-batch-caption/status/{task_id}")).json()
    assert before["status"] in ("pending", "processing") and before["result"] is None

    async with serve(config) as (client, _app):
        final = await _poll(client, task_id)
    assert final["status"] == "completed"
    assert [r["caption"].split()[0] for r in final["result"]] == ["20x12", "21x12", "22x12"]
