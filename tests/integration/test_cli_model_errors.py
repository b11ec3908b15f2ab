"""A model that cannot be used: the real ``descry caption`` says why in one line, at once, with exit code 2.

The machine is a newcomer's: no HF_HUB_OFFLINE, an empty Hugging Face cache, and a hub that cannot be
reached (HF_ENDPOINT is a local port nothing listens on, so "unreachable" is immediate and deterministic).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import image_bytes

HUB_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_ENDPOINT")
QUICK_S = 15  # transformers' own retries alone take about 25 s


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def run_cli(*args: str, cwd: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], float]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("DESCRY_") and k not in HUB_ENV}
    base.update(HF_HOME=str(cwd / "hf-home"), HF_ENDPOINT=closed_port_url(), DESCRY_DECODE_THREADS="2", **env)
    t0 = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "descry.cli", *args], cwd=cwd, env=base, capture_output=True, text=True, timeout=120
    )
    return result, time.perf_counter() - t0


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """Exit code 2 and exactly one line on stderr, without a traceback."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.jpg"
    path.write_bytes(image_bytes("JPEG", (32, 24)))
    return path


def test_a_mistyped_preset_fails_at_once_and_suggests_the_preset(photo: Path, tmp_path: Path) -> None:
    result, seconds = run_cli("caption", str(photo), "--model", "florence2-base", cwd=tmp_path)
    line = one_line_error(result)
    assert "florence2-base" in line and "florence-2-base" in line and "descry models" in line
    assert seconds < QUICK_S


def test_a_preset_that_is_not_cached_fails_at_once(photo: Path, tmp_path: Path) -> None:
    result, seconds = run_cli("caption", str(photo), "--model", "blip-base", cwd=tmp_path)
    line = one_line_error(result)
    assert "blip-base" in line and "HF_HOME" in line
    assert seconds < QUICK_S


def test_offline_mode_is_honoured(photo: Path, tmp_path: Path) -> None:
    result, seconds = run_cli("caption", str(photo), "--model", "org/not-cached", cwd=tmp_path, HF_HUB_OFFLINE="1")
    line = one_line_error(result)
    assert "org/not-cached" in line and "HF_HUB_OFFLINE" in line
    assert seconds < QUICK_S


def test_a_path_that_does_not_exist_is_named(photo: Path, tmp_path: Path) -> None:
    missing = tmp_path / "models" / "florence2-base"
    result, seconds = run_cli("caption", str(photo), "--model", str(missing), cwd=tmp_path)
    line = one_line_error(result)
    assert str(missing) in line and "florence-2-base" in line and "descry models" in line
    assert seconds < QUICK_S


def test_a_directory_without_config_json_is_not_a_model(photo: Path, tmp_path: Path) -> None:
    folder = tmp_path / "downloads"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"not really")
    result, _ = run_cli("caption", str(photo), "--model", str(folder), cwd=tmp_path)
    line = one_line_error(result)
    assert str(folder) in line and "config.json" in line


def test_transformers_not_installed_names_the_extra(photo: Path, tmp_path: Path) -> None:
    shadow = tmp_path / "shadow"
    shadow.mkdir()  # an environment where transformers cannot be imported
    shadowed = "raise ModuleNotFoundError(\"No module named 'transformers'\", name='transformers')\n"
    (shadow / "transformers.py").write_text(shadowed)
    paths = os.pathsep.join([str(shadow), *filter(None, [os.environ.get("PYTHONPATH")])])
    result, _ = run_cli("caption", str(photo), "--model", "blip-base", cwd=tmp_path, PYTHONPATH=paths)
    line = one_line_error(result)
    assert "transformers" in line and '-e ".[hf]"' in line


@pytest.mark.slow
def test_a_processor_that_needs_a_missing_package_names_it(photo: Path, tmp_path: Path) -> None:
    """A SmolVLM-style checkpoint: its processor needs torchvision (video) and num2words."""
    import importlib.util

    missing = [name for name in ("torchvision", "num2words") if importlib.util.find_spec(name) is None]
    if not missing:
        pytest.skip("torchvision and num2words are both installed")
    from tests.tiny.hf_vlm import build_tiny_idefics3

    model = build_tiny_idefics3(tmp_path / "smol")
    config = json.loads((model / "processor_config.json").read_text())
    (model / "processor_config.json").write_text(json.dumps({**config, "processor_class": "SmolVLMProcessor"}))
    (model / "video_preprocessor_config.json").write_text(json.dumps({"video_processor_type": "SmolVLMVideoProcessor"}))
    result, _ = run_cli("caption", str(photo), "--model", str(model), "--device", "cpu", cwd=tmp_path)
    line = one_line_error(result)
    assert any(name in line for name in missing) and "pip install" in line
