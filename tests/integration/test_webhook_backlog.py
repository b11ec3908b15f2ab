"""A backlog left in the webhook outbox is sent from process start, without new work.

The earlier process is gone: its rows are pending (some after a refused attempt), one is still
claimed by a process that no longer exists (a live lease an hour long), one by a claim whose lease
ran out. The server (the app's lifespan) and ``async with Descry`` (the library and ``descry
worker``) must send all of them within one poll of the dispatcher, with no caption request at all.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from descry.config import Settings, WebhookSettings
from descry.core import Descry
from descry.engine.pipeline import Engine
from descry.sinks.outbox import Outbox, claim_owner, owner_is_dead
from descry.sinks.webhook import POLL_SECONDS
from tests.api_helpers import serve
from tests.fakes.echo_backend import EchoBackend

ROWS = 20


class Keys:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: list[str] = []

    def count(self) -> int:
        with self.lock:
            return len(set(self.seen))


@pytest.fixture
def receiver() -> Iterator[tuple[str, Keys]]:
    keys = Keys()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            self.rfile.read(int(self.headers["Content-Length"]))
            with keys.lock:
                keys.seen.append(self.headers["Idempotency-Key"])
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks", keys
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _dead_pid() -> int:
    with subprocess.Popen(["true"]) as proc:
        proc.wait()
    return proc.pid


def _write_backlog(path: Path) -> None:
    """ROWS pending rows as a stopped process leaves them, claims and refused attempts included."""
    outbox = Outbox(path, channel="webhook")
    try:
        past = time.time() - 600
        for i in range(ROWS):
            outbox.enqueue(f"asset-{i:02d}", f"key-{i:02d}", b'{"event": "descry.enrichment"}', now=past + i)
        dead_owner = f"{socket.gethostname()}/{_dead_pid()}/killed"
        (stranded,) = outbox.claim(1, 3600.0, dead_owner)  # SIGKILLed mid-send: lease still runs an hour
        (expired,) = outbox.claim(1, 10.0, "elsewhere/1/gone", now=past + 60)  # lease ran out long ago
        assert {stranded.id, expired.id} == {1, 2}
        refused = outbox.claim(3, 30.0, claim_owner())
        for entry in refused:  # the receiver answered 503; due again a moment after the restart
            outbox.mark_retry(entry.id, 503, "HTTP 503", time.time() + 0.5)
        assert outbox.counts() == {"pending": ROWS, "delivered": 0, "dead": 0}
    finally:
        outbox.close()


def _with_webhook(settings: Settings, url: str) -> Settings:
    webhook = WebhookSettings(url=url, timeout=5, backoff_base=0.05, max_backoff=0.2, flush_on_close=0)
    return settings.model_copy(update={"sinks": settings.sinks.model_copy(update={"webhook": webhook})})


async def _all_arrive(keys: Keys, started: float) -> float:
    """Seconds from start until every row arrived; fails after one dispatcher poll (plus slack)."""
    while keys.count() < ROWS:
        if time.monotonic() - started > POLL_SECONDS + 1.0:
            raise AssertionError(f"{keys.count()} of {ROWS} outbox rows arrived without new work")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


def _counts(settings: Settings) -> dict[str, int]:
    outbox = Outbox(settings.data_dir / "outbox.db", channel="webhook")
    try:
        return outbox.counts()
    finally:
        outbox.close()


@pytest.fixture
async def backlog(settings: Settings, receiver: tuple[str, Keys]) -> AsyncIterator[tuple[Settings, Keys]]:
    url, keys = receiver
    _write_backlog(settings.data_dir / "outbox.db")
    yield _with_webhook(settings, url), keys


async def test_server_start_sends_the_outbox_backlog(backlog: tuple[Settings, Keys]) -> None:
    settings, keys = backlog
    started = time.monotonic()
    async with serve(settings, ready=False):
        elapsed = await _all_arrive(keys, started)
    assert elapsed <= POLL_SECONDS + 1.0
    assert len(keys.seen) == ROWS  # each row once
    assert _counts(settings) == {"pending": 0, "delivered": ROWS, "dead": 0}


async def test_descry_open_sends_the_outbox_backlog(backlog: tuple[Settings, Keys]) -> None:
    """``async with Descry`` is what ``descry worker`` runs in: no caption, no job, still sent."""
    settings, keys = backlog
    started = time.monotonic()
    async with Descry(settings, engine=Engine(settings, backend=EchoBackend())):
        await _all_arrive(keys, started)
    assert len(keys.seen) == ROWS
    assert _counts(settings) == {"pending": 0, "delivered": ROWS, "dead": 0}


async def test_no_webhook_url_starts_no_network_sink(settings: Settings) -> None:
    async with Descry(settings, engine=Engine(settings, backend=EchoBackend())) as descry:
        assert descry.sinks._sinks == {}
    assert not (settings.data_dir / "outbox.db").exists()


def test_only_dead_local_processes_lose_their_claims(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.db", channel="webhook")
    try:
        owners = [
            f"{socket.gethostname()}/{_dead_pid()}/x",  # dead here: released
            claim_owner(),  # this process: kept
            f"other-host-{socket.gethostname()}/{_dead_pid()}/x",  # another host: cannot tell, kept
            "legacy-uuid-owner",  # an owner of an older version: kept until its lease runs out
        ]
        for i, owner in enumerate(owners):
            outbox.enqueue(f"a{i}", f"k{i}", b"{}")
            assert len(outbox.claim(1, 3600.0, owner)) == 1
        assert [owner_is_dead(o) for o in owners] == [True, False, False, False]
        assert outbox.release_dead_claims() == 1
        assert [e.asset for e in outbox.claim(10, 60.0, claim_owner())] == ["a0"]
    finally:
        outbox.close()
