"""A real ``descry serve`` with the tiny BLIP model and an API key, for the OpenAI and Ollama SDK tests."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from descry.api.security import hash_key
from tests.e2e.server import ServerProcess

KEY = "sk-descry-e2e"
MAX_BYTES = 200_000  # images above this are refused (the oversized-image case)


def compat_server(model_dir: Path, root: Path, **env: str) -> ServerProcess:
    """Not started: the caller starts and stops it."""
    keys = f'[{{"name": "sdk", "sha256": "{hash_key(KEY)}"}}]'
    config = {
        "DESCRY_MODEL__NAME": str(model_dir),
        "DESCRY_MODEL__DEVICE": "cpu",
        "DESCRY_MODEL__BATCH_SIZE": "8",
        "DESCRY_BATCHING__MAX_WAIT_MS": "200",
        "DESCRY_DATA_DIR": str(root / "data"),
        "DESCRY_SECURITY__API_KEYS": keys,
        "DESCRY_SECURITY__PUBLIC_HEALTH": "true",  # the readiness poll sends no key
        "DESCRY_SECURITY__PUBLIC_METRICS": "true",
        "DESCRY_SECURITY__CLIENT_RATE": "0",
        "DESCRY_SECURITY__KEY_RATE": "0",
        "DESCRY_SOURCES__URL_ALLOWLIST": '["127.0.0.1"]',
        "DESCRY_LIMITS__MAX_BYTES": str(MAX_BYTES),
        "DESCRY_AGENT__MAX_ATTEMPTS": "1",
        "MAX_TOKENS": "12",
        **env,
    }
    return ServerProcess(root, config)


def batch_counters(url: str) -> tuple[float, float]:
    """(batches, images in them) from the server's /metrics."""
    text = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {KEY}"}, timeout=10).text

    def value(name: str) -> float:
        match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
        assert match, f"{name} not in /metrics"
        return float(match.group(1))

    return value("descry_batch_size_count"), value("descry_batch_size_sum")
