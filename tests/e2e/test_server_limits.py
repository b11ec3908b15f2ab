"""``descry serve`` puts its connection limits in force: the header deadline and the connection cap."""

from __future__ import annotations

import select
import socket
import time
from contextlib import ExitStack
from pathlib import Path

import httpx

from tests.e2e.server import ServerProcess

HEADER_TIMEOUT = 1.0
CAP = 4


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if select.select([sock], [], [], 0.05)[0]:
            try:
                if not sock.recv(65536):
                    return True
            except OSError:
                return True
    return False


def test_serve_closes_unfinished_headers_and_caps_connections(tmp_path: Path) -> None:
    env = {
        "DESCRY_MODEL__NAME": str(tmp_path / "no-such-model"),  # fails at once; /health still answers
        "DESCRY_MODEL__DEVICE": "cpu",
        "DESCRY_DATA_DIR": str(tmp_path / "data"),
        "DESCRY_SECURITY__CLIENT_RATE": "0",
        "DESCRY_SERVER__HEADER_TIMEOUT_S": str(HEADER_TIMEOUT),
        "DESCRY_SERVER__MAX_CONNECTIONS": str(CAP),
    }
    server = ServerProcess(tmp_path / "run", env)
    server.start(timeout=90, until="/health")
    try:
        with ExitStack() as stack:
            held = [
                stack.enter_context(socket.create_connection(("127.0.0.1", server.port), timeout=5)) for _ in range(CAP)
            ]
            for sock in held:
                sock.sendall(b"GET /health HTTP/1.1\r\n")  # and never the rest
            time.sleep(0.3)
            assert httpx.get(f"{server.url}/health", timeout=5).status_code == 503  # beyond the cap
            assert all(_closed_within(sock, HEADER_TIMEOUT + 2.0) for sock in held)
        assert httpx.get(f"{server.url}/health", timeout=5).status_code == 200
    finally:
        server.stop()
