"""A model that cannot load is reported, not fatal; SIGTERM shuts the server down cleanly."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import image_bytes
from tests.e2e.server import ServerProcess

pytestmark = pytest.mark.slow


def test_load_failure_is_reported_and_sigterm_is_clean(tiny_blip_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "no-weights"
    broken.mkdir()
    shutil.copy(tiny_blip_dir / "config.json", broken / "config.json")  # a BLIP config without weights
    env = {
        "DESCRY_MODEL__NAME": str(broken),
        "DESCRY_MODEL__DEVICE": "cpu",
        "DESCRY_DATA_DIR": str(tmp_path / "data"),
        "DESCRY_SECURITY__CLIENT_RATE": "0",
    }
    server = ServerProcess(tmp_path / "run", env).start(timeout=90, until="/health")
    try:
        health = httpx.get(f"{server.url}/health", timeout=10).json()
        deadline = time.monotonic() + 60
        while health["model_status"] == "loading" and time.monotonic() < deadline:
            time.sleep(0.1)
            health = httpx.get(f"{server.url}/health", timeout=10).json()
        assert health["status"] == "failed" and health["ok"] is False and health["error"]
        ready = httpx.get(f"{server.url}/ready", timeout=10)
        assert ready.status_code == 503 and "retry-after" not in ready.headers  # restarting helps, waiting not
        assert ready.json()["error"]["code"] == "model_load_failed"
        photo = ("a.jpg", image_bytes("JPEG", (32, 32)), "image/jpeg")
        infer = httpx.post(f"{server.url}/infer", files={"file": photo}, timeout=10)
        assert infer.status_code == 503 and infer.json()["error"]["code"] == "model_load_failed"
    finally:
        code = server.stop()
    log = server.log_text()
    assert code in (0, -15), log  # uvicorn re-raises SIGTERM after a graceful shutdown
    assert "Application shutdown complete." in log
    assert "the model failed to load: could not load the model" in log and "Traceback" not in log
