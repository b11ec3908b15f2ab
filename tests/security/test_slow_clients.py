"""Slow and piled-up clients: a real uvicorn server with short configured limits.

A body that trickles gets 408 at the body deadline; connections that never finish their headers
are closed at the header deadline; connections beyond the cap get 503 at once, not a place in
a pile.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress

import httpx

from tests.security.conftest import ServerProcess

HEADER_TIMEOUT = 1.5
BODY_TIMEOUT = 2.0
MARGIN = 2.0  # seconds past a deadline the server may take on a busy machine
DRIP = 0.25


def _limits(**extra: object) -> dict[str, object]:
    return {
        "DESCRY_SERVER__HEADER_TIMEOUT_S": HEADER_TIMEOUT,
        "DESCRY_SERVER__BODY_TIMEOUT_S": BODY_TIMEOUT,
        "DESCRY_SECURITY__CLIENT_RATE": 0,
        "DESCRY_AGENT__ENABLED": "false",
        **extra,
    }


@contextmanager
def raw(server: ServerProcess, first: bytes = b"") -> Iterator[socket.socket]:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        if first:
            sock.sendall(first)
        yield sock


def _readable(sock: socket.socket) -> bool:
    return bool(select.select([sock], [], [], 0)[0])


def _closed(sock: socket.socket) -> bool:
    """True once the server has closed the connection (EOF or reset), whatever it sent first."""
    try:
        while _readable(sock):
            if not sock.recv(65536):
                return True
    except OSError:
        return True
    return False


def test_a_trickling_upload_gets_408_within_the_body_timeout(start_server: Callable[..., ServerProcess]) -> None:
    server = start_server(_limits())
    head = (
        b"POST /v1/caption HTTP/1.1\r\nHost: descry\r\n"
        b"Content-Type: multipart/form-data; boundary=xyz\r\nContent-Length: 100000\r\n\r\n--xyz\r\n"
    )
    with raw(server, head) as sock:
        started = time.monotonic()
        answer = b""
        for _ in range(int(30 / DRIP)):  # at most 30 s of dripping
            if _readable(sock):
                answer = sock.recv(65536)
                break
            sock.sendall(b"a")
            time.sleep(DRIP)
        elapsed = time.monotonic() - started
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert elapsed < BODY_TIMEOUT + MARGIN
        deadline = time.monotonic() + 5
        while not _closed(sock):
            assert time.monotonic() < deadline, "the connection stayed open after the 408"
            time.sleep(0.05)
    assert httpx.get(f"{server.base}/health", timeout=5).status_code == 200


def test_connections_that_never_finish_their_headers_are_closed(start_server: Callable[..., ServerProcess]) -> None:
    server = start_server(_limits())
    count = 60
    with ExitStack() as stack:
        silent = [stack.enter_context(raw(server)) for _ in range(count // 2)]
        dripping = [stack.enter_context(raw(server, b"GET /health HTTP/1.1\r\nX-Pad: ")) for _ in range(count // 2)]
        started = time.monotonic()
        open_ = silent + dripping
        for _ in range(int(30 / DRIP)):  # at most 30 s
            for sock in dripping:
                if sock in open_:
                    with suppress(OSError):
                        sock.sendall(b"a")
            open_ = [sock for sock in open_ if not _closed(sock)]
            if not open_:
                break
            time.sleep(DRIP)
        elapsed = time.monotonic() - started
        assert not open_, f"{len(open_)} of {count} connections still open after {elapsed:.1f}s"
        assert elapsed < HEADER_TIMEOUT + MARGIN
    assert httpx.get(f"{server.base}/health", timeout=5).status_code == 200


def test_connections_beyond_the_cap_get_503_at_once(start_server: Callable[..., ServerProcess]) -> None:
    cap = 8
    server = start_server(_limits(DESCRY_SERVER__MAX_CONNECTIONS=cap))
    with ExitStack() as stack:
        held = [stack.enter_context(raw(server, b"GET /health HTTP/1.1\r\n")) for _ in range(cap)]
        time.sleep(0.3)  # all accepted
        statuses = []
        for _ in range(3):
            started = time.monotonic()
            statuses.append(httpx.get(f"{server.base}/health", timeout=5).status_code)
            assert time.monotonic() - started < 1.0
        assert statuses == [503, 503, 503]
        assert len(held) == cap
    deadline = time.monotonic() + HEADER_TIMEOUT + MARGIN  # the held ones are gone: room again
    while (status := httpx.get(f"{server.base}/health", timeout=5).status_code) != 200:
        assert status == 503 and time.monotonic() < deadline
        time.sleep(0.1)
