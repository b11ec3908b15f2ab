"""Hostile JSON bodies get bounded 4xx answers, and every error body keeps the seeds' ``detail``."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest

from descry.config import Settings
from tests.api_helpers import api_settings, jpeg, serve

JSON = {"content-type": "application/json"}
JSON_ROUTES = ["/v1/caption", "/v1/caption/batch", "/v1/jobs", "/caption"]


def unknown_keys(count: int) -> bytes:
    return json.dumps({f"key{i}": 0 for i in range(count)}).encode()


def envelope(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text[:500]
    body: dict[str, Any] = response.json()
    assert body["error"]["code"] == code
    assert isinstance(body["detail"], str) and body["detail"]
    assert body["request_id"] == response.headers["x-request-id"]
    return body


async def test_validation_error_body_is_bounded(settings: Settings) -> None:
    async with serve(api_settings(settings)) as (client, _app):
        many = await client.post("/v1/caption", content=unknown_keys(50_000), headers=JSON)
        few = await client.post("/v1/caption", json={"url": 7, "detail": "huge"})
    body = envelope(many, 422, "validation_error")
    assert len(many.content) < 64 * 1024
    assert 0 < len(body["error"]["details"]) <= 20
    assert len(body["error"]["details"]) + body["error"]["omitted"] == 50_000
    body = envelope(few, 422, "validation_error")
    assert body["error"]["omitted"] == 0 and len(body["error"]["details"]) == 2


async def test_long_keys_are_cut_in_the_error(settings: Settings) -> None:
    async with serve(api_settings(settings)) as (client, _app):
        response = await client.post("/v1/caption", json={"k" * 100_000: 1})
    envelope(response, 422, "validation_error")
    assert len(response.content) < 4096


async def test_a_million_keys_are_refused_before_validation(settings: Settings) -> None:
    raw = unknown_keys(1_000_000)  # 12 MB, as in the report
    async with serve(api_settings(settings)) as (client, _app):
        started = time.perf_counter()
        response = await client.post("/v1/caption", content=raw, headers=JSON)
        seconds = time.perf_counter() - started
    envelope(response, 413, "payload_too_large")
    assert len(response.content) < 4096 and seconds < 5


async def test_a_json_body_over_the_limit_is_refused_before_parsing(settings: Settings) -> None:
    config = api_settings(settings, security={"client_rate": 0.0, "max_batch_items": 10})
    async with serve(config) as (client, _app):
        response = await client.post("/v1/caption/batch", content=b"[" + b"0," * 40_000 + b"0]", headers=JSON)
    envelope(response, 413, "payload_too_large")


async def test_health_answers_while_a_large_body_is_validated(settings: Settings) -> None:
    raw = unknown_keys(300_000)
    async with serve(api_settings(settings)) as (client, _app):
        big = asyncio.create_task(client.post("/v1/caption", content=raw, headers=JSON))
        waits = []
        while not big.done():  # /health is asked again and again while the big body is handled
            started = time.perf_counter()
            health = await client.get("/health")
            waits.append(time.perf_counter() - started)
            assert health.status_code == 200
        response = await big
    assert len(waits) > 1 and max(waits) < 1.0, waits
    assert response.status_code in (413, 422) and len(response.content) < 64 * 1024


@pytest.mark.parametrize("route", JSON_ROUTES)
async def test_deeply_nested_json_is_a_4xx(settings: Settings, route: str) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    nested = json.dumps({"url": "http://example.com/a.jpg", "params": {"temperature": [[[[[[[[1]]]]]]]]}})
    just_over = b"[" * 65 + b"]" * 65
    async with serve(api_settings(settings)) as (client, _app):
        for body in (deep, just_over, ("{" + '"a":' * 5000 + "1" + "}" * 5000).encode()):
            response = await client.post(route, content=body, headers=JSON)
            envelope(response, 422, "validation_error")
        shallow = await client.post(route, content=nested, headers=JSON)
    assert 400 <= shallow.status_code < 500


@pytest.mark.parametrize("route", ["/v1/caption", "/v1/caption/batch", "/v1/jobs"])
async def test_deeply_nested_params_form_field_is_a_4xx(settings: Settings, route: str) -> None:
    part = "file" if route == "/v1/caption" else "files"
    async with serve(api_settings(settings)) as (client, _app):
        response = await client.post(
            route, files={part: ("a.jpg", jpeg(), "image/jpeg")}, data={"params": "[" * 5000 + "]" * 5000}
        )
    envelope(response, 400, "invalid_input")


async def test_every_error_body_has_detail(settings: Settings) -> None:
    async with serve(api_settings(settings)) as (client, _app):
        answers = [
            await client.post("/v1/caption", files={"file": ("a.jpg", b"not an image", "image/jpeg")}),
            await client.post("/v1/caption", content=b"{", headers=JSON),
            await client.get("/v1/jobs/nope"),
            await client.get("/no/such/route"),
            await client.post("/infer", files={"file": ("a.jpg", jpeg()[:200], "image/jpeg")}),
            await client.post("/caption", json={"detailed": True}),
            await client.post("/batch-caption", content=b"x", headers={"content-type": "text/plain"}),
            await client.get("/async-batch-caption/status/0123456789abcdef0123456789abcdef"),
        ]
    for response in answers:
        assert 400 <= response.status_code < 500, response.text
        body = response.json()
        assert set(body) == {"error", "detail", "request_id"}, body
        assert isinstance(body["detail"], str) and body["detail"]
