"""End-to-end fixtures: a tiny real BLIP model built once per session, served by a real process."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import image_bytes
from tests.e2e.compat_server import compat_server
from tests.e2e.server import ServerProcess


@pytest.fixture(scope="session")
def tiny_blip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny randomly initialised BLIP checkpoint (the real architecture), saved once per session."""
    from tests.tiny.blip import build_tiny_blip

    return build_tiny_blip(tmp_path_factory.mktemp("e2e-blip") / "tiny-blip")


@pytest.fixture(scope="session")
def image_site() -> Iterator[str]:
    """A local HTTP server answering /photo.jpg with a 48x32 JPEG."""
    data = image_bytes("JPEG", (48, 32))

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            found = self.path == "/photo.jpg"
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(data) if found else 0))
            self.end_headers()
            if found:
                self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def descry_server(tiny_blip_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """``descry serve`` on a free port with the tiny BLIP model, ready to answer."""
    root = tmp_path_factory.mktemp("e2e-server")
    env = {
        "DESCRY_MODEL__NAME": str(tiny_blip_dir),
        "DESCRY_MODEL__DEVICE": "cpu",
        "DESCRY_DATA_DIR": str(root / "data"),
        "DESCRY_SECURITY__CLIENT_RATE": "0",
        "DESCRY_SOURCES__URL_ALLOWLIST": '["127.0.0.1"]',
        "MAX_TOKENS": "12",  # a seed alias; short generations and few retries keep the test fast
        "DESCRY_AGENT__MAX_ATTEMPTS": "2",
        "DESCRY_AGENT__TOKEN_FLOOR": "16",
        "DESCRY_AGENT__MAX_NEW_TOKENS_CAP": "24",
    }
    server = ServerProcess(root, env, extra_args=["--log-level", "info"])
    server.start(timeout=90)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def sdk_server(tiny_blip_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One keyed ``descry serve`` (tests.e2e.compat_server) for the OpenAI and Ollama SDK tests."""
    process = compat_server(tiny_blip_dir, tmp_path_factory.mktemp("sdk-server"))
    process.start(timeout=120)
    try:
        yield process
    finally:
        process.stop()
