"""`descry caption` with a gated hub model it may not download: one line naming the model page, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.fakes.hub_server import FakeHub

pytestmark = pytest.mark.slow


def test_a_gated_model_says_where_to_accept_its_licence(tmp_path: Path) -> None:
    image = tmp_path / "photo.jpg"
    Image.new("RGB", (32, 32), "red").save(image)
    with FakeHub() as hub:
        page = f"{hub.url}/org/gated"
        files = {"config.json": b'{"model_type": "blip"}', "model.safetensors": bytes(2048)}
        hub.add_repo("org/gated", files, gated=True, tokens={"hf_ok"})
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "DESCRY_", "HUGGING"))}
        env.update(HF_HOME=str(tmp_path / "hf"), HF_ENDPOINT=hub.url, DESCRY_DATA_DIR=str(tmp_path / "data"))
        done = subprocess.run(
            [sys.executable, "-m", "descry.cli", "caption", str(image), "--model", "org/gated"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert page in lines[0]
    assert not image.with_suffix(".txt").exists()
