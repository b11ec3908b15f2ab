"""Every error is JSON with a stable code, the right status, and the request id."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from descry.api.deps import get_service
from descry.config import Settings
from descry.errors import CapabilityError
from tests.api_helpers import PROMPT, api_settings, jpeg, serve
from tests.fakes.echo_backend import EchoBackend


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"error", "detail", "request_id"}
    assert body["error"]["code"] == code and body["error"]["message"]
    assert isinstance(body["detail"], str) and body["detail"]
    assert body["request_id"] == response.headers["x-request-id"]
    return body


async def test_image_errors(settings: Settings) -> None:
    config = api_settings(settings, limits={"max_bytes": 4000})
    async with serve(config) as (client, _app):

        async def send(name: str, data: bytes, **form: str) -> httpx.Response:
            return await client.post("/v1/caption", files={"file": (name, data, "image/jpeg")}, data=form)

        corrupt = await send("broken.jpg", jpeg((200, 200))[:400])
        text = await send("notes.jpg", b"just some notes, not a picture at all")
        empty = await send("empty.jpg", b"")
        large = await send("big.jpg", b"\xff\xd8" + b"\x00" * 5000)
        task = await send("a.jpg", jpeg(), task="<OCR>")
        prompt_ok = await send("a.jpg", jpeg(), prompt=PROMPT)
    assert_error(corrupt, 400, "corrupt_image")
    body = assert_error(text, 415, "unsupported_format")
    assert body["error"]["source"] == "notes.jpg" and "accepted formats" in body["error"]["message"]
    assert_error(empty, 400, "corrupt_image")
    body = assert_error(large, 413, "image_too_large")
    assert "MAX_BYTES" in body["error"]["message"]
    body = assert_error(task, 422, "unsupported_request")
    assert "<CAPTION>" in body["error"]["hint"]
    assert prompt_ok.status_code == 200


async def test_request_body_limit(settings: Settings) -> None:
    config = api_settings(settings, security={"max_body_bytes": 4096, "client_rate": 0.0})
    async with serve(config) as (client, _app):
        declared = await client.post("/infer", files={"file": ("a.jpg", b"\xff" * 10_000, "image/jpeg")})

        async def chunks() -> Any:
            for _ in range(10):
                yield b"x" * 1000

        streamed = await client.post(
            "/v1/caption", content=chunks(), headers={"content-type": "application/json"}
        )
    assert_error(declared, 413, "payload_too_large")
    assert_error(streamed, 413, "payload_too_large")


async def test_unknown_async_batch_is_404(settings: Settings) -> None:
    async with serve(api_settings(settings)) as (client, _app):
        response = await client.get("/async-batch-caption/status/ffffffffffffffffffffffffffffffff")
        route = await client.get("/no/such/route")
    assert_error(response, 404, "not_found")
    assert_error(route, 404, "not_found")


async def test_queue_full_is_429_with_retry_after(settings: Settings) -> None:
    config = api_settings(
        settings,
        model={"batch_size": 1},
        batching={"max_queue": 2, "inflight_batches": 1, "max_wait_ms": 0},
        agent={"enabled": False},
    )
    async with serve(config, EchoBackend(delay=0.2)) as (client, _app):
        responses = await asyncio.gather(
            *(
                client.post("/infer", files={"file": (f"{i}.jpg", jpeg((30 + i, 20)), "image/jpeg")})
                for i in range(10)
            )
        )
        metrics = (await client.get("/metrics")).text
    refused = [r for r in responses if r.status_code == 429]
    served = [r for r in responses if r.status_code == 200]
    assert refused and served and len(refused) + len(served) == 10
    for response in refused:
        body = assert_error(response, 429, "overloaded")
        assert int(response.headers["retry-after"]) >= 1
        assert "MAX_QUEUE" in body["error"]["message"]
    assert f'descry_failures_total{{code="overloaded"}} {float(len(refused))}' in metrics


async def test_model_not_ready_is_503_with_retry_after(settings: Settings) -> None:
    class SlowLoad(EchoBackend):
        def load(self) -> None:
            import time

            time.sleep(0.5)
            super().load()

    async with serve(api_settings(settings), SlowLoad(), ready=False) as (client, _app):
        health = (await client.get("/health")).json()
        ready = await client.get("/ready")
        caption = await client.post("/infer", files={"file": ("a.jpg", jpeg(), "image/jpeg")})
    assert health["status"] == "loading" and health["ok"] is False
    assert_error(ready, 503, "model_not_ready")
    body = assert_error(caption, 503, "model_not_ready")
    assert caption.headers["retry-after"] == "5" and "loading" in body["error"]["message"]


async def test_load_failure_is_reported_not_raised(settings: Settings) -> None:
    class Broken(EchoBackend):
        def load(self) -> None:
            raise RuntimeError("weights are missing")

    async with serve(api_settings(settings), Broken(), ready=False) as (client, _app):
        for _ in range(100):
            health = (await client.get("/health")).json()
            if health["model_status"] != "loading":
                break
            await asyncio.sleep(0.01)
        ready = await client.get("/ready")
        caption = await client.post("/infer", files={"file": ("a.jpg", jpeg(), "image/jpeg")})
    assert health["status"] == "failed" and health["ok"] is False
    assert "weights are missing" in health["error"] and health["error_code"] == "internal_error"
    assert "weights are missing" in assert_error(ready, 503, "model_load_failed")["error"]["message"]
    assert_error(caption, 503, "model_load_failed")


async def test_unexpected_errors_are_500_without_a_stack_trace(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    class Exploding:
        async def caption(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("secret internals /srv/app.py line 12")

    async with serve(api_settings(settings)) as (client, app):
        app.dependency_overrides[get_service] = lambda: Exploding()
        response = await client.post(
            "/infer", files={"file": ("a.jpg", jpeg(), "image/jpeg")}, headers={"X-Request-ID": "trace-me"}
        )
        app.dependency_overrides[get_service] = lambda: _raises(CapabilityError("nope", hint="a hint"))
        mapped = await client.post("/infer", files={"file": ("a.jpg", jpeg(), "image/jpeg")})
    body = assert_error(response, 500, "internal_error")
    assert "secret" not in response.text and "Traceback" not in response.text
    assert body["request_id"] == "trace-me"
    assert any("secret internals" in (r.exc_text or "") or r.exc_info for r in caplog.records)
    assert_error(mapped, 422, "unsupported_request")


def _raises(error: Exception) -> Any:
    class Raising:
        async def caption(self, *args: Any, **kwargs: Any) -> Any:
            raise error

    return Raising()
