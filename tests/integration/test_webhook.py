"""The webhook sink against a real HTTP receiver that is down for a while, across a restart."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from descry import schemas
from descry.config import WebhookSettings
from descry.sinks.webhook import WebhookSink, idempotency_key

SECRET = "integration-secret"


@dataclass
class Received:
    key: str
    asset: str
    caption: str
    signature_ok: bool


@dataclass
class ReceiverState:
    accepting: threading.Event = field(default_factory=threading.Event)
    refused: int = 0
    accepted: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _handler(state: ReceiverState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if not state.accepting.is_set():
                with state.lock:
                    state.refused += 1
                self._reply(503, b'{"error": "maintenance"}', {"Retry-After": "0"})
                return
            payload = json.loads(body)
            expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            signature = self.headers.get("X-Descry-Signature", "")
            with state.lock:
                state.accepted.append(
                    Received(
                        key=self.headers["Idempotency-Key"],
                        asset=payload["asset_id"],
                        caption=payload["enrichment"]["caption"],
                        signature_ok=hmac.compare_digest(signature, expected),
                    )
                )
            self._reply(200, b'{"ok": true}', {})

        def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return None

    return Handler


@pytest.fixture
def receiver() -> Iterator[tuple[str, ReceiverState]]:
    state = ReceiverState()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks/descry", state
    finally:
        server.shutdown()
        server.server_close()


def _sink(url: str, outbox: Path) -> WebhookSink:
    settings = WebhookSettings(
        url=url,
        secret=SECRET,
        timeout=5,
        backoff_base=0.05,
        max_backoff=0.2,
        max_attempts=1000,
        flush_on_close=0,
        concurrency=4,
    )
    return WebhookSink(settings, outbox)


def _enrichment(asset: str, version: int) -> schemas.Enrichment:
    return schemas.Enrichment(
        name=f"{asset}.jpg",
        asset_id=asset,
        caption=f"{asset} caption v{version}",
        source="blip",
        tags=[schemas.Tag(name=f"tag{version}", source="keyword")],
    )


async def _wait_for(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the receiver")
        await asyncio.sleep(0.02)


async def test_down_receiver_restart_every_update_once_in_order(
    receiver: tuple[str, ReceiverState], tmp_path: Path
) -> None:
    url, state = receiver
    outbox = tmp_path / "data" / "outbox.db"
    sent: list[schemas.Enrichment] = []

    first = _sink(url, outbox)
    await first.start()
    for asset, version in [("cat", 1), ("cat", 2), ("dog", 1), ("cat", 3), ("dog", 2)]:
        sent.append(_enrichment(asset, version))
        await first.deliver(sent[-1], schemas.ImageRef(kind=schemas.SourceKind.upload, name=f"{asset}.jpg"))
    await _wait_for(lambda: state.refused >= 6)
    await first.close()
    assert state.accepted == []

    second = _sink(url, outbox)
    assert second.counts()["pending"] == 5
    await second.start()
    for asset, version in [("dog", 3), ("cat", 4)]:
        sent.append(_enrichment(asset, version))
        await second.deliver(sent[-1], schemas.ImageRef(kind=schemas.SourceKind.upload, name=f"{asset}.jpg"))
    refused_before = state.refused
    await _wait_for(lambda: state.refused >= refused_before + 4)
    state.accepting.set()
    counts = await second.drain(timeout=20)
    await second.close()

    assert counts == {"pending": 0, "delivered": 7, "dead": 0}
    keys = [r.key for r in state.accepted]
    assert sorted(keys) == sorted(idempotency_key(e.asset_id or "", e) for e in sent)
    assert len(set(keys)) == len(keys) == 7
    assert all(r.signature_ok for r in state.accepted)
    for asset in ("cat", "dog"):
        got = [r.caption for r in state.accepted if r.asset == asset]
        assert got == [e.caption for e in sent if e.asset_id == asset]

    third = _sink(url, outbox)
    assert third.counts() == {"pending": 0, "delivered": 7, "dead": 0}
    assert await third.drain(timeout=1) == {"pending": 0, "delivered": 7, "dead": 0}
    await third.close()
    assert len(state.accepted) == 7
