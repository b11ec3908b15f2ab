"""Where descry keeps its state: the per-user data directory, never the directory it was started in."""

from __future__ import annotations

from pathlib import Path

import pytest

from descry.config import Settings
from tests.conftest import mixed_folder
from tests.integration.test_cli_caption import run_cli, summary
from tests.tiny.blip import build_tiny_blip


@pytest.fixture(scope="module")
def tiny_blip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_blip(tmp_path_factory.mktemp("tiny-blip"))


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def test_state_goes_to_the_per_user_data_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DESCRY_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    settings = Settings()
    assert settings.data_dir == tmp_path / "xdg" / "descry"
    assert settings.jobs.url_for(settings.data_dir).endswith(str(tmp_path / "xdg" / "descry" / "descry.db"))


def test_a_setting_moves_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DESCRY_DATA_DIR", str(tmp_path / "volume"))
    assert Settings().data_dir == tmp_path / "volume"


def test_caption_writes_nothing_but_its_outputs(tiny_blip: Path, tmp_path: Path, user_data_home: Path) -> None:
    files = mixed_folder(tmp_path / "photos", count=4)
    (tmp_path / "work").mkdir()
    before = files_under(tmp_path) | files_under(user_data_home)
    result = run_cli(
        "caption", str(tmp_path / "photos"), "--model", str(tiny_blip), "--max-tokens", "4", cwd=tmp_path / "work"
    )
    assert summary(result)["ok"] == len(files["good"])
    written = (files_under(tmp_path) | files_under(user_data_home)) - before
    assert written == {p.with_suffix(".txt") for p in files["good"]}
