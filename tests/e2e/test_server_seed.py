"""A real `descry serve` process with a tiny real BLIP model: every seed route and the v1 API over HTTP."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest

from tests.conftest import image_bytes
from tests.e2e.server import ServerProcess

pytestmark = pytest.mark.slow

SEED_ROUTES = {
    ("/infer", "post"),
    ("/api/enrich", "post"),
    ("/caption", "post"),
    ("/batch-caption", "post"),
    ("/async-batch-caption", "post"),
    ("/async-batch-caption/status/{task_id}", "get"),
    ("/health", "get"),
}
V1_ROUTES = {("/v1/caption", "post"), ("/v1/caption/batch", "post"), ("/v1/models", "get")}


def jpeg(size: tuple[int, int] = (64, 48)) -> tuple[str, bytes, str]:
    return ("photo.jpg", image_bytes("JPEG", size), "image/jpeg")


@pytest.fixture(scope="module")
def client(descry_server: ServerProcess) -> httpx.Client:
    with httpx.Client(base_url=descry_server.url, timeout=60) as http:
        yield http


def test_health_and_ready(client: httpx.Client, descry_server: ServerProcess) -> None:
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["ok"] is True and health["model_status"] == "ready"
    assert health["backend"] == "blip" and health["device"] == "cpu"
    assert health["model"].endswith("tiny-blip")
    assert {"gpt_oss_enabled", "gpt_oss_model", "gpt_oss_reasoning_level"} <= set(health)
    assert health["load_seconds"] > 0
    assert client.get("/ready").status_code == 200


def test_infer(client: httpx.Client) -> None:
    response = client.post("/infer", files={"file": jpeg()})
    assert response.status_code == 200, response.text
    assert list(response.json()) == ["caption"] and isinstance(response.json()["caption"], str)


def test_api_enrich_reaches_the_mam_log(client: httpx.Client, descry_server: ServerProcess) -> None:
    response = client.post("/api/enrich", files={"file": jpeg()}, data={"asset_id": "e2e-asset-1"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert {"caption", "tags", "source", "reasoning_trace"} <= set(body)
    assert all(isinstance(t, str) for t in body["tags"]) and body["reasoning_trace"]
    for _ in range(50):
        if "[MAM] Updated asset e2e-asset-1 with metadata:" in descry_server.log_text():
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"no MAM log line:\n{descry_server.log_tail()}")


def test_caption_upload_and_json_url(client: httpx.Client, image_site: str) -> None:
    upload = client.post("/caption", files={"file": jpeg()})
    assert upload.status_code == 200, upload.text
    assert set(upload.json()) == {"filename", "caption", "tags", "processing_time"}
    assert upload.json()["filename"] == "photo.jpg"
    by_url = client.post("/caption", json={"url": f"{image_site}/photo.jpg", "detailed": True})
    assert by_url.status_code == 200, by_url.text
    assert set(by_url.json()) == {"caption", "enhanced", "s3_uri"} and by_url.json()["enhanced"] is False
    missing = client.post("/caption", json={"url": f"{image_site}/missing.jpg"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_batch_caption(client: httpx.Client) -> None:
    files = [("files", jpeg((40 + i, 30))) for i in range(3)] + [("files", ("x.txt", b"text", "text/plain"))]
    response = client.post("/batch-caption", files=files)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"results", "total_processing_time"}
    assert [r["image_path"] for r in body["results"]] == ["photo.jpg"] * 3 + ["x.txt"]
    assert all(isinstance(r["caption"], str) for r in body["results"][:3])
    assert body["results"][3]["error"]["code"] == "unsupported_format"


def _wait_done(client: httpx.Client, task_id: str) -> dict[str, Any]:
    for _ in range(300):
        body: dict[str, Any] = client.get(f"/async-batch-caption/status/{task_id}").json()
        if body["status"] in ("completed", "failed"):
            return body
        time.sleep(0.1)
    raise AssertionError("the async batch did not finish")


def test_async_batch(client: httpx.Client) -> None:
    files = [("files", jpeg((30 + i, 20))) for i in range(4)]
    submitted = client.post("/async-batch-caption", files=files)
    assert submitted.status_code == 202, submitted.text
    assert set(submitted.json()) == {"message", "task_id"}
    final = _wait_done(client, submitted.json()["task_id"])
    assert final["status"] == "completed" and final["progress"] == {"total": 4, "done": 4, "failed": 0}
    assert len(final["result"]) == 4
    assert {"task_id", "status", "message", "result"} <= set(final)
    unknown = client.get("/async-batch-caption/status/00000000000000000000000000000000")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"


def test_v1_caption_batch_models_and_request_ids(client: httpx.Client, descry_server: ServerProcess) -> None:
    one = client.post(
        "/v1/caption", files={"file": jpeg()}, data={"detail": "detailed"}, headers={"X-Request-ID": "e2e-1"}
    )
    assert one.status_code == 200, one.text
    assert one.headers["x-request-id"] == "e2e-1" == one.json()["request_id"]
    assert one.json()["backend"] == "blip" and one.json()["image"] == {
        "width": 64,
        "height": 48,
        "format": "JPEG",
    }
    batch = client.post(
        "/v1/caption/batch", files=[("files", jpeg()), ("files", ("bad.jpg", b"nope", "image/jpeg"))]
    )
    assert [r["ok"] for r in batch.json()["results"]] == [True, False]
    models = client.get("/v1/models").json()
    assert models["model"]["backend"] == "blip" and models["presets"]
    log = descry_server.log_text()
    assert re.search(r"request_id=e2e-1 msg=\"method=POST path=/v1/caption route=/v1/caption status=200", log)


def test_docs_and_openapi_list_every_route(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()
    listed = {(path, method) for path, ops in schema["paths"].items() for method in ops}
    assert listed >= SEED_ROUTES | V1_ROUTES
    docs = client.get("/docs")
    assert docs.status_code == 200 and "openapi.json" in docs.text


def test_metrics(client: httpx.Client) -> None:
    text = client.get("/metrics").text
    assert re.search(r"^descry_batch_size_count [1-9]", text, re.MULTILINE)
    assert re.search(r"^descry_images_processed_total [1-9]", text, re.MULTILINE)
    assert re.search(r"^descry_model_load_seconds [0-9.]+", text, re.MULTILINE)
    assert 'descry_http_requests_total{method="POST",route="/infer",status="200"}' in text


def test_errors_are_json(client: httpx.Client) -> None:
    corrupt = client.post(
        "/infer", files={"file": ("c.jpg", image_bytes("JPEG", (100, 100))[:300], "image/jpeg")}
    )
    assert corrupt.status_code == 400 and corrupt.json()["error"]["code"] == "corrupt_image"
    assert corrupt.json()["request_id"] == corrupt.headers["x-request-id"]
