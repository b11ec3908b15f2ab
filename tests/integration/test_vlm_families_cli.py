"""``descry caption`` in a fresh process on the checkpoints whose loading is most special (no torchvision):
SmolVLM2 (still video processor, num2words) and Mistral 3 (PixtralProcessor's module stand-in)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import image_bytes
from tests.integration.test_cli_caption import run_cli, summary
from tests.tiny.vlm_more import build_tiny_mistral3
from tests.tiny.vlm_tiled import build_tiny_smolvlm2

pytestmark = pytest.mark.slow

BUILDERS: dict[str, Callable[[Path], Path]] = {
    "smolvlm2": build_tiny_smolvlm2,
    "mistral3": build_tiny_mistral3,
}


@pytest.mark.parametrize("family", sorted(BUILDERS))
def test_a_folder_of_different_sizes_is_captioned_in_one_batch(family: str, tmp_path: Path) -> None:
    model = BUILDERS[family](tmp_path / family)
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, size in enumerate([(64, 48), (40, 96), (90, 90)]):
        (photos / f"p{i}.png").write_bytes(image_bytes("PNG", size))
    out = tmp_path / "captions.jsonl"
    result = run_cli(
        "caption", str(photos), "--model", str(model), "--device", "cpu", "--max-tokens", "4",
        "--batch-size", "3", "-f", "jsonl", "-o", str(out), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stderr
    data = summary(result)
    assert data["total"] == 3 and data["ok"] + data["failed"] == 3
    assert {f["code"] for f in data["failures"]} <= {"empty_caption"}  # a random model may say nothing
    assert len(out.read_text().splitlines()) == data["ok"]
    assert all(json.loads(line)["caption"] for line in out.read_text().splitlines())
