"""The webhook sink against httpx.MockTransport: headers, status classes, backoff, dead letters, order."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from descry import schemas
from descry.config import WebhookSettings
from descry.errors import ConfigError
from descry.sinks.webhook import WebhookSink, backoff_seconds, idempotency_key, retry_after_seconds

SECRET = "s3cret"


def _enrichment(asset: str, caption: str) -> schemas.Enrichment:
    return schemas.Enrichment(name=f"{asset}.jpg", asset_id=asset, caption=caption, source="blip")


def _ref(asset: str) -> schemas.ImageRef:
    return schemas.ImageRef(kind=schemas.SourceKind.upload, name=f"{asset}.jpg")


class Receiver:
    """Answers each request with the next scripted status (then 200) and records what it got."""

    def __init__(self, script: Callable[[httpx.Request, int], httpx.Response] | None = None) -> None:
        self.script = script or (lambda request, n: httpx.Response(200))
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.script(request, len(self.requests))

    def captions(self) -> list[str]:
        return [json.loads(r.content)["enrichment"]["caption"] for r in self.requests]


def _sink(tmp_path: Path, receiver: Receiver, **kw: object) -> WebhookSink:
    options: dict[str, object] = {
        "url": "http://mam.test/hook",
        "secret": SECRET,
        "backoff_base": 0.01,
        "max_backoff": 0.05,
        "flush_on_close": 0,
        "max_attempts": 5,
    }
    autostart = bool(kw.pop("autostart", False))
    options.update(kw)
    return WebhookSink(
        WebhookSettings(**options),  # type: ignore[arg-type]
        tmp_path / "outbox.db",
        transport=httpx.MockTransport(receiver),
        rng=random.Random(0),
        autostart=autostart,
    )


async def test_request_is_signed_and_idempotent(tmp_path: Path) -> None:
    receiver = Receiver()
    sink = _sink(tmp_path, receiver, headers={"Authorization": "Bearer t"})
    enrichment = _enrichment("a1", "a cat")
    await sink.deliver(enrichment, _ref("a1"))
    counts = await sink.drain(timeout=5)
    await sink.close()
    assert counts == {"pending": 0, "delivered": 1, "dead": 0}
    (request,) = receiver.requests
    body = request.content
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert request.headers["X-Descry-Signature"] == expected
    assert request.headers["Idempotency-Key"] == idempotency_key("a1", enrichment)
    assert request.headers["Authorization"] == "Bearer t"
    assert request.headers["Content-Type"] == "application/json"
    payload = json.loads(body)
    assert payload["asset_id"] == "a1" and payload["idempotency_key"] == request.headers["Idempotency-Key"]
    assert schemas.Enrichment.model_validate(payload["enrichment"]) == enrichment


def test_idempotency_key_is_stable_per_asset_and_content() -> None:
    first = idempotency_key("a1", _enrichment("a1", "a cat"))
    assert first == idempotency_key("a1", _enrichment("a1", "a cat"))
    assert first != idempotency_key("a2", _enrichment("a1", "a cat"))
    assert first != idempotency_key("a1", _enrichment("a1", "a dog"))


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422])
async def test_permanent_client_errors_go_to_dead_letters(tmp_path: Path, status: int) -> None:
    receiver = Receiver(lambda request, n: httpx.Response(status, text="nope"))
    sink = _sink(tmp_path, receiver)
    await sink.deliver(_enrichment("a1", "a cat"), _ref("a1"))
    counts = await sink.drain(timeout=5)
    assert counts == {"pending": 0, "delivered": 0, "dead": 1}
    assert len(receiver.requests) == 1
    (dead,) = sink.dead_letters()
    assert dead.last_status == status and dead.attempts == 1 and "nope" in (dead.last_error or "")
    await sink.close()


@pytest.mark.parametrize("status", [408, 409, 425, 429, 500, 502, 503])
async def test_transient_statuses_are_retried(tmp_path: Path, status: int) -> None:
    receiver = Receiver(lambda request, n: httpx.Response(status if n < 3 else 204))
    sink = _sink(tmp_path, receiver)
    await sink.deliver(_enrichment("a1", "a cat"), _ref("a1"))
    assert (await sink.drain(timeout=5))["delivered"] == 1
    assert [r.headers["X-Descry-Attempt"] for r in receiver.requests] == ["1", "2", "3"]
    assert len({r.headers["Idempotency-Key"] for r in receiver.requests}) == 1
    await sink.close()


async def test_connection_errors_are_retried(tmp_path: Path) -> None:
    def script(request: httpx.Request, n: int) -> httpx.Response:
        if n < 3:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200)

    receiver = Receiver(script)
    sink = _sink(tmp_path, receiver)
    await sink.deliver(_enrichment("a1", "a cat"), _ref("a1"))
    assert (await sink.drain(timeout=5))["delivered"] == 1
    assert len(receiver.requests) == 3
    await sink.close()


async def test_retry_after_is_honoured(tmp_path: Path) -> None:
    receiver = Receiver(lambda request, n: httpx.Response(429, headers={"Retry-After": "120"}))
    sink = _sink(tmp_path, receiver)
    await sink.deliver(_enrichment("a1", "a cat"), _ref("a1"))
    before = time.time()
    assert await sink.run_once() == 1
    (entry,) = sink.outbox.entries("pending")
    assert entry.next_attempt_at >= before + 119
    assert await sink.run_once() == 0
    await sink.close()


async def test_max_attempts_then_dead_letter_then_requeue(tmp_path: Path) -> None:
    receiver = Receiver(lambda request, n: httpx.Response(503 if n <= 3 else 200))
    sink = _sink(tmp_path, receiver, max_attempts=3)
    await sink.deliver(_enrichment("a1", "a cat"), _ref("a1"))
    assert await sink.drain(timeout=5) == {"pending": 0, "delivered": 0, "dead": 1}
    assert len(receiver.requests) == 3
    (dead,) = sink.dead_letters()
    assert dead.attempts == 3 and dead.last_status == 503
    assert sink.requeue_dead() == 1
    assert await sink.drain(timeout=5) == {"pending": 0, "delivered": 1, "dead": 0}
    await sink.close()


async def test_a_failing_update_holds_back_later_updates_of_that_asset_only(tmp_path: Path) -> None:
    def script(request: httpx.Request, n: int) -> httpx.Response:
        caption = json.loads(request.content)["enrichment"]["caption"]
        return httpx.Response(503 if caption == "a1 v1" and n < 4 else 200)

    receiver = Receiver(script)
    sink = _sink(tmp_path, receiver)
    for asset, caption in [("a1", "a1 v1"), ("a1", "a1 v2"), ("b2", "b2 v1"), ("b2", "b2 v2")]:
        await sink.deliver(_enrichment(asset, caption), _ref(asset))
    assert (await sink.drain(timeout=5))["delivered"] == 4
    await sink.close()
    got = [c for c in receiver.captions() if c.startswith("a1")]
    assert got[-2:] == ["a1 v1", "a1 v2"] and set(got[:-2]) == {"a1 v1"}
    b_order = [c for c in receiver.captions() if c.startswith("b2")]
    assert b_order == ["b2 v1", "b2 v2"]
    assert receiver.captions().index("b2 v2") < receiver.captions().index("a1 v2")


async def test_identical_pending_update_is_enqueued_once(tmp_path: Path) -> None:
    receiver = Receiver()
    sink = _sink(tmp_path, receiver)
    for _ in range(3):
        await sink.deliver(_enrichment("a1", "a cat"), _ref("a1"))
    await sink.deliver(_enrichment("a1", "a dog"), _ref("a1"))
    assert sink.counts()["pending"] == 2
    await sink.drain(timeout=5)
    assert receiver.captions() == ["a cat", "a dog"]
    await sink.close()


async def test_a_new_sink_on_the_same_outbox_resumes(tmp_path: Path) -> None:
    down = Receiver(lambda request, n: httpx.Response(503))
    first = _sink(tmp_path, down)
    await first.deliver(_enrichment("a1", "v1"), _ref("a1"))
    await first.deliver(_enrichment("a1", "v2"), _ref("a1"))
    await first.run_once()
    await first.close()
    with pytest.raises(Exception, match="closed"):
        await first.deliver(_enrichment("a1", "v3"), _ref("a1"))
    up = Receiver()
    second = _sink(tmp_path, up)
    assert second.counts() == {"pending": 2, "delivered": 0, "dead": 0}
    assert await second.drain(timeout=5) == {"pending": 0, "delivered": 2, "dead": 0}
    assert up.captions() == ["v1", "v2"]
    assert up.requests[0].headers["X-Descry-Attempt"] == "2"
    await second.close()


async def test_the_dispatcher_sends_in_the_background(tmp_path: Path) -> None:
    receiver = Receiver()
    sink = _sink(tmp_path, receiver, autostart=True)
    for i in range(5):
        await sink.deliver(_enrichment("a1", f"v{i}"), _ref("a1"))
    deadline = time.monotonic() + 5
    while sink.counts()["delivered"] < 5 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    await sink.close()
    assert receiver.captions() == [f"v{i}" for i in range(5)]


async def test_close_flushes_what_is_due(tmp_path: Path) -> None:
    receiver = Receiver()
    sink = _sink(tmp_path, receiver, flush_on_close=5)
    await sink.deliver(_enrichment("a1", "v1"), _ref("a1"))
    await sink.close()
    assert receiver.captions() == ["v1"]


def test_bad_url_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="DESCRY_SINKS__WEBHOOK__URL"):
        WebhookSink(WebhookSettings(url="ftp://x"), tmp_path / "outbox.db")


def test_backoff_grows_is_capped_and_jittered() -> None:
    rng = random.Random(1)
    delays = [backoff_seconds(n, 1.0, 30.0, rng) for n in range(1, 10)]
    for n, delay in enumerate(delays, start=1):
        full = min(30.0, 2 ** (n - 1))
        assert full / 2 <= delay <= full
    assert max(delays) <= 30.0


def test_retry_after_parsing() -> None:
    now = 1_700_000_000.0
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    assert retry_after_seconds("Tue, 14 Nov 2023 22:14:20 GMT", now=now) == 60.0
    assert retry_after_seconds("-5") == 0.0
