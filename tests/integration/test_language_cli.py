"""`--language` on the real commands: an instruction-following model (the fake OpenAI-compatible server) is
asked in the language and the result says so; an English-only preset without an enhancement LLM is refused
in one line with exit 2 before any model work, and nothing is written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import image_bytes
from tests.fakes.openai_server import FakeOpenAIServer

MODEL = "fake-vlm"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(models=[MODEL]) as srv:
        yield srv


def run_cli(*args: str, cwd: Path, **extra_env: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DESCRY_")}
    env.update(HF_HUB_OFFLINE="1", DESCRY_DECODE_THREADS="2", DESCRY_AGENT__ENABLED="false", **extra_env)
    return subprocess.run(
        [sys.executable, "-m", "descry.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def photos(root: Path, count: int = 2) -> Path:
    root.mkdir()
    for i in range(count):
        (root / f"p{i}.jpg").write_bytes(image_bytes("JPEG", (40 + i, 30)))
    return root


@pytest.mark.parametrize("how", ["flag", "setting"])
def test_instruct_models_are_asked_in_the_language(server: FakeOpenAIServer, tmp_path: Path, how: str) -> None:
    server.reset()
    folder = photos(tmp_path / "photos")
    out = tmp_path / "out.jsonl"
    args = ["caption", str(folder), "--base-url", server.base_url, "--model", MODEL, "-f", "jsonl", "-o", str(out)]
    extra = {"DESCRY_LANGUAGE": "de"} if how == "setting" else {}
    result = run_cli(*args, *(["--language", "de"] if how == "flag" else []), cwd=tmp_path, **extra)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2 and {row["language"] for row in rows} == {"de"}
    assert len(server.chat_requests) == 2
    assert all("German" in request.text for request in server.chat_requests)


def test_batch_takes_the_language_too(server: FakeOpenAIServer, tmp_path: Path) -> None:
    server.reset()
    folder = photos(tmp_path / "photos")
    out = tmp_path / "results.jsonl"
    args = ["batch", str(folder), "--base-url", server.base_url, "--model", MODEL, "-o", str(out), "--language", "fr"]
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2 and all(row.get("language") == "fr" for row in rows)
    assert all("French" in request.text for request in server.chat_requests)


@pytest.mark.parametrize("command", ["caption", "batch"])
def test_english_only_models_without_an_llm_are_refused_before_any_work(tmp_path: Path, command: str) -> None:
    folder = photos(tmp_path / "photos")
    result = run_cli(command, str(folder), "--model", "florence-2-base", "--language", "de", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in folder.iterdir()) == ["p0.jpg", "p1.jpg"]
    assert not list(tmp_path.glob("*.jsonl"))


def test_a_malformed_language_is_a_usage_error(tmp_path: Path) -> None:
    result = run_cli("caption", str(photos(tmp_path / "photos")), "--language", "not a tag", cwd=tmp_path)
    assert result.returncode == 2
    assert "--language" in result.stderr
