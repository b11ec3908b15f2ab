"""``descry serve --model`` with a model that cannot be had: the log says so once, without hub retries."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import image_bytes
from tests.e2e.server import ServerProcess

pytestmark = pytest.mark.slow


def test_serve_model_flag_and_a_load_failure_reported_once(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a hub nothing answers for: unreachable at once
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    env = {
        "HF_ENDPOINT": closed,
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_HUB_OFFLINE": "0",
        "TRANSFORMERS_OFFLINE": "0",
        "DESCRY_MODEL__DEVICE": "cpu",
        "DESCRY_DATA_DIR": str(tmp_path / "data"),
        "DESCRY_SECURITY__CLIENT_RATE": "0",
    }
    server = ServerProcess(tmp_path / "run", env, extra_args=["--model", "florence2-base"])
    server.start(timeout=90, until="/health")
    try:
        deadline = time.monotonic() + 30
        health = httpx.get(f"{server.url}/health", timeout=10).json()
        while health["model_status"] == "loading" and time.monotonic() < deadline:
            time.sleep(0.1)
            health = httpx.get(f"{server.url}/health", timeout=10).json()
        assert health["model"] == "florence2-base"  # --model reached the worker process
        assert health["status"] == "failed" and health["error_code"] == "model_not_found"
        assert "florence-2-base" in health["error"]
        photo = ("a.jpg", image_bytes("JPEG", (32, 32)), "image/jpeg")
        caption = httpx.post(f"{server.url}/v1/caption", files={"file": photo}, timeout=10)
        assert caption.status_code == 503 and caption.json()["error"]["code"] == "model_load_failed"
    finally:
        server.stop()
    log = server.log_text()
    assert "Retrying" not in log and closed not in log.replace(f"the hub ({closed})", "")
    assert sum("level=error" in line and "failed to load" in line for line in log.splitlines()) == 1, log
    assert "Traceback" not in log
