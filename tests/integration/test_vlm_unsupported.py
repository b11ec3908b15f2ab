"""A vision-language family the installed transformers cannot load: one clear line from ``descry caption``, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.test_cli_model_errors import one_line_error, run_cli
from tests.tiny.hf_vlm import build_tiny_llava

pytestmark = pytest.mark.slow


def test_a_family_transformers_does_not_know_is_one_line_exit_2(tmp_path: Path) -> None:
    from tests.conftest import image_bytes

    photo = tmp_path / "photo.png"
    photo.write_bytes(image_bytes("PNG", (40, 30)))
    model = build_tiny_llava(tmp_path / "future-vlm")
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "model_type": "llava_2031"}))
    result, _ = run_cli("caption", str(photo), "--model", str(model), "--device", "cpu", cwd=tmp_path)
    line = one_line_error(result)
    assert "transformers" in line and str(model) in line
    assert "llava_2031" in line
