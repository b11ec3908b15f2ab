"""Concurrent single-image requests share device batches; metrics and logs describe what happened."""

from __future__ import annotations

import asyncio
import logging
import re

import pytest

from descry.api.logs import KeyValueFormatter, RequestIdFilter
from descry.config import Settings
from tests.api_helpers import PROMPT, api_settings, jpeg, serve
from tests.fakes.echo_backend import EchoBackend


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in metrics"
    return float(match.group(1))


async def test_32_concurrent_requests_share_device_batches(settings: Settings) -> None:
    config = api_settings(
        settings,
        model={"batch_size": 8},
        batching={"max_wait_ms": 50},
        agent={"enabled": False},
        tags={"enabled": False},
    )
    backend = EchoBackend(delay=0.02)
    sizes = [(40 + i, 30 + (i % 5)) for i in range(32)]
    async with serve(config, backend) as (client, _app):
        responses = await asyncio.gather(
            *(
                client.post(
                    "/v1/caption",
                    files={"file": (f"{i}.jpg", jpeg(size), "image/jpeg")},
                    data={"prompt": PROMPT},
                    headers={"X-Request-ID": f"r{i}"},
                )
                for i, size in enumerate(sizes)
            )
        )
        text = (await client.get("/metrics")).text
    for i, (response, (w, h)) in enumerate(zip(responses, sizes, strict=True)):
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["caption"] == f"{w}x{h} {PROMPT}"
        assert body["name"] == f"{i}.jpg" and body["request_id"] == f"r{i}"
    assert sum(backend.batches) == 32
    assert len(backend.batches) < 32 and max(backend.batches) > 1
    assert metric(text, "descry_batch_size_count") == len(backend.batches)
    assert metric(text, "descry_batch_size_sum") == 32
    assert metric(text, "descry_images_processed_total") == 32
    assert 'descry_http_requests_total{method="POST",route="/v1/caption",status="200"} 32.0' in text
    assert 'descry_http_request_duration_seconds_count{method="POST",route="/v1/caption"} 32.0' in text
    assert metric(text, "descry_queue_depth") == 0
    assert metric(text, "descry_model_ready") == 1
    assert metric(text, "descry_model_load_seconds") >= 0


async def test_failures_are_counted_by_code(settings: Settings) -> None:
    async with serve(api_settings(settings)) as (client, _app):
        await client.post("/infer", files={"file": ("a.jpg", b"not an image at all", "image/jpeg")})
        await client.post("/batch-caption", files=[("files", ("b.jpg", jpeg((13, 20)), "image/jpeg"))])
        await client.get("/async-batch-caption/status/nope")
        text = (await client.get("/metrics")).text
    assert 'descry_failures_total{code="unsupported_format"} 1.0' in text
    assert 'descry_failures_total{code="model_error"} 1.0' in text
    assert 'descry_failures_total{code="not_found"} 1.0' in text
    assert 'route="/async-batch-caption/status/{task_id}",status="404"' in text


async def test_access_log_carries_the_request_id(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with serve(api_settings(settings)) as (client, _app):
        await client.post(
            "/infer", files={"file": ("a.jpg", jpeg(), "image/jpeg")}, headers={"X-Request-ID": "abc-1"}
        )
        generated = await client.post("/infer", files={"file": ("a.jpg", jpeg(), "image/jpeg")})
        unsafe = await client.get("/health", headers={"X-Request-ID": "bad id with spaces"})
    access = [r for r in caplog.records if r.name == "descry.api.access" and r.levelno == logging.INFO]
    record = next(r for r in access if getattr(r, "request_id", None) == "abc-1")
    assert "route=/infer status=200" in record.getMessage()
    assert re.fullmatch(r"[0-9a-f]{32}", generated.headers["x-request-id"])
    assert unsafe.headers["x-request-id"] != "bad id with spaces"

    line = KeyValueFormatter().format(record)
    assert line.startswith("ts=") and "level=info logger=descry.api.access request_id=abc-1" in line
    assert 'msg="method=POST path=/infer route=/infer status=200' in line


def test_log_filter_adds_no_id_outside_a_request() -> None:
    record = logging.LogRecord("descry", logging.INFO, __file__, 1, "hello world", None, None)
    assert RequestIdFilter().filter(record) and record.request_id is None
    assert KeyValueFormatter().format(record).endswith('logger=descry msg="hello world"')
