"""Slow image servers: a URL whose server trickles its headers costs its own request only.

Every outbound fetch has one total deadline (connect, headers and body); the trickling server
here sends one header byte every quarter second, well inside httpx's per-read timeout.
"""

from __future__ import annotations

import socketserver
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from descry.config import ImageLimits, SourceSettings
from descry.errors import SourceFetchError
from descry.sources import fetch_url
from tests.security.conftest import ServerProcess
from tests.security.corpus import picture

DRIP_SECONDS = 0.25
DRIP_BYTES = 60  # 15 s of headers at most, then the response ends (the handler never runs unbounded)
MARGIN = 1.5  # seconds past the deadline a failure may take on a busy machine


class Trickler(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    stop = threading.Event()


class TrickleHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        stop = Trickler.stop
        try:
            self.request.sendall(b"HTTP/1.1 200 OK\r\nX-Pad: ")
            for _ in range(DRIP_BYTES):
                if stop.wait(DRIP_SECONDS):
                    return
                self.request.sendall(b"a")
            self.request.sendall(b"\r\nContent-Length: 0\r\n\r\n")
        except OSError:
            return  # the client hung up: what the deadline is for


@pytest.fixture
def trickler() -> Iterator[str]:
    Trickler.stop = threading.Event()
    server = Trickler(("127.0.0.1", 0), TrickleHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/photo.jpg"
    Trickler.stop.set()
    server.shutdown()
    server.server_close()  # joins the handler threads
    thread.join(5)


def test_trickled_headers_fail_at_the_total_deadline(trickler: str) -> None:
    settings = SourceSettings(url_allowlist=["127.0.0.1"], fetch_timeout=1.0)
    started = time.monotonic()
    with pytest.raises(SourceFetchError):
        fetch_url(trickler, settings, ImageLimits())
    assert time.monotonic() - started < 1.0 + MARGIN


def test_four_trickling_urls_cost_their_own_requests_only(
    trickler: str, start_server: Callable[..., ServerProcess]
) -> None:
    timeout = 3.0
    env = {
        "DESCRY_SOURCES__URL_ALLOWLIST": '["127.0.0.1"]',
        "DESCRY_SOURCES__FETCH_TIMEOUT": timeout,
        "DESCRY_SECURITY__CLIENT_RATE": 0,
        "DESCRY_AGENT__ENABLED": "false",
    }
    server = start_server(env)
    answers: list[tuple[int, str, float]] = []

    def caption_url() -> None:
        started = time.monotonic()
        response = httpx.post(f"{server.base}/v1/caption", json={"url": trickler}, timeout=30)
        code = response.json()["error"]["code"] if response.status_code >= 400 else ""
        answers.append((response.status_code, code, time.monotonic() - started))

    threads = [threading.Thread(target=caption_url) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # the four fetches are under way
    image = {"file": ("up.png", picture("PNG", (32, 24)), "image/png")}
    for _ in range(3):
        started = time.monotonic()
        upload = httpx.post(f"{server.base}/v1/caption", files=image, timeout=10)
        assert upload.status_code == 200, upload.text
        assert time.monotonic() - started < 2.0
    for thread in threads:
        thread.join(30)
    assert len(answers) == 4
    assert all(status == 400 and code == "fetch_failed" for status, code, _ in answers), answers
    assert max(seconds for _, _, seconds in answers) < timeout + MARGIN, answers
    assert httpx.get(f"{server.base}/health", timeout=5).status_code == 200
