"""`descry pull` and `descry models --local` against a local stand-in for the Hugging Face hub (HF_ENDPOINT).

The real CLI runs in a subprocess with HF_HOME in a temporary folder, so huggingface_hub reads HF_ENDPOINT,
HF_TOKEN and HF_HUB_OFFLINE as it would for a user; tests/fakes/hub_server.py serves the repositories.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import socket
import struct
import subprocess
import sys
import termios
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.hub_server import FakeHub

pytestmark = pytest.mark.slow

MiB = 1 << 20
TINY = {
    "config.json": b'{"model_type": "florence2"}',
    "model.safetensors": os.urandom(300_000),
    "tokenizer.json": b'{"version": "1.0"}',
    "pytorch_model.bin": os.urandom(200_000),  # a second copy of the weights: left out
    "tf_model.h5": os.urandom(50_000),
}
CHOSEN = ("config.json", "model.safetensors", "tokenizer.json")


@pytest.fixture
def fake_hub() -> Iterator[FakeHub]:
    with FakeHub() as server:
        server.add_repo("org/tiny", TINY)
        yield server


def run_cli(*args: str, home: Path, endpoint: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "DESCRY_", "HUGGING"))}
    base.update(HF_HOME=str(home), HF_ENDPOINT=endpoint, COLUMNS="200", **env)
    return subprocess.run(
        [sys.executable, "-m", "descry.cli", *args], env=base, capture_output=True, text=True, timeout=120
    )


def run_on_terminal(*args: str, home: Path, endpoint: str) -> tuple[int, str]:
    """The CLI on a pseudo-terminal 120 columns wide (stdout and stderr together), as a user sees it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "DESCRY_", "HUGGING"))}
    env.update(HF_HOME=str(home), HF_ENDPOINT=endpoint, TERM="xterm")
    parent, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    with subprocess.Popen([sys.executable, "-m", "descry.cli", *args], stdout=child, stderr=child, env=env) as proc:
        os.close(child)
        chunks = []
        while True:
            try:
                chunk = os.read(parent, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        os.close(parent)
        code = proc.wait(timeout=120)
    return code, b"".join(chunks).decode(errors="replace")


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def snapshot(home: Path, repo_id: str, server: FakeHub) -> Path:
    return home / "hub" / f"models--{repo_id.replace('/', '--')}" / "snapshots" / server.repos[repo_id].sha


def local_listing(home: Path, endpoint: str) -> dict[str, dict]:
    result = run_cli("models", "--local", "--json", home=home, endpoint=endpoint)
    assert result.returncode == 0, result.stderr
    return {row["model_id"]: row for row in json.loads(result.stdout)["models"]}


def test_pull_says_the_size_first_fills_the_cache_and_a_second_pull_is_a_no_op(
    fake_hub: FakeHub, tmp_path: Path
) -> None:
    dry = run_cli("pull", "org/tiny", "--dry-run", home=tmp_path, endpoint=fake_hub.url)
    assert dry.returncode == 0, dry.stderr
    total = sum(len(TINY[name]) for name in CHOSEN)
    size = f"{total / 1000:.1f} kB"
    assert dry.stdout.splitlines()[0].startswith(f"org/tiny: {size} in 3 files, {size} to download")
    assert "2 files in other formats left out" in dry.stdout
    assert fake_hub.downloads() == [] and not (tmp_path / "hub" / "models--org--tiny" / "snapshots").exists()
    assert "note:" not in dry.stdout  # florence2 is a family descry serves

    first = run_cli("pull", "org/tiny", home=tmp_path, endpoint=fake_hub.url)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[0] == dry.stdout.splitlines()[0]
    assert lines[-1].startswith("done:")
    folder = snapshot(tmp_path, "org/tiny", fake_hub)
    assert sorted(p.name for p in folder.iterdir()) == sorted(CHOSEN)
    assert all((folder / name).read_bytes() == TINY[name] for name in CHOSEN)
    assert sorted(s.path.rsplit("/", 1)[-1] for s in fake_hub.downloads()) == sorted(CHOSEN)

    fake_hub.requests.clear()
    again = run_cli("pull", "org/tiny", home=tmp_path, endpoint=fake_hub.url)
    assert again.returncode == 0, again.stderr
    assert "to download" not in again.stdout and again.stdout.splitlines()[-1].startswith("already in the cache")
    assert fake_hub.downloads() == [] and not [s for s in fake_hub.requests if s.method == "HEAD"]

    cached = local_listing(tmp_path, fake_hub.url)["org/tiny"]
    assert (cached["files"], cached["complete"], cached["refs"]) == (3, True, ["main"])
    assert cached["size_bytes"] == total


def test_on_a_terminal_the_size_comes_first_then_a_progress_bar(fake_hub: FakeHub, tmp_path: Path) -> None:
    code, screen = run_on_terminal("pull", "org/tiny", home=tmp_path, endpoint=fake_hub.url)
    assert code == 0, screen
    size_at = screen.index("org/tiny: ")
    bar_at = screen.index("Fetching 3 files: 100%")
    done_at = screen.index("done: ")
    assert size_at < bar_at < done_at
    assert screen[done_at:].count("%|") == 0  # every bar is closed before the last line


def test_a_connection_cut_mid_file_is_resumed_with_a_range_request(tmp_path: Path) -> None:
    weights = os.urandom(11 * MiB)
    with FakeHub() as server:
        server.add_repo("org/big", {"config.json": b"{}", "model.safetensors": weights})
        server.cut_once["model.safetensors"] = 10 * MiB + 4096  # past huggingface_hub's 10 MiB write chunk
        result = run_cli("pull", "org/big", home=tmp_path, endpoint=server.url)
        assert result.returncode == 0, result.stderr
        gets = server.downloads("model.safetensors")
    assert [g.range for g in gets] == [None, f"bytes={10 * MiB}-"]
    assert (snapshot(tmp_path, "org/big", server) / "model.safetensors").read_bytes() == weights


def test_a_failed_pull_keeps_finished_files_and_the_rerun_fetches_only_the_rest(
    fake_hub: FakeHub, tmp_path: Path
) -> None:
    fake_hub.fail.add("model.safetensors")
    failed = run_cli("pull", "org/tiny", home=tmp_path, endpoint=fake_hub.url)
    assert "org/tiny" in one_line_error(failed)
    assert local_listing(tmp_path, fake_hub.url)["org/tiny"]["missing_files"] == 1

    fake_hub.fail.clear()
    fake_hub.requests.clear()
    rerun = run_cli("pull", "org/tiny", home=tmp_path, endpoint=fake_hub.url)
    assert rerun.returncode == 0, rerun.stderr
    assert [s.path.rsplit("/", 1)[-1] for s in fake_hub.downloads()] == ["model.safetensors"]
    assert local_listing(tmp_path, fake_hub.url)["org/tiny"]["complete"] is True


def test_a_gated_model_says_how_to_accept_the_licence_and_log_in(tmp_path: Path) -> None:
    with FakeHub() as server:
        server.add_repo(
            "org/gated", {"config.json": b"{}", "model.safetensors": bytes(2048)}, gated=True, tokens={"hf_ok"}
        )
        anonymous = one_line_error(run_cli("pull", "org/gated", home=tmp_path, endpoint=server.url))
        assert f"{server.url}/org/gated" in anonymous and "hf auth login" in anonymous and "HF_TOKEN" in anonymous

        refused = one_line_error(run_cli("pull", "org/gated", home=tmp_path, endpoint=server.url, HF_TOKEN="hf_no"))
        assert f"{server.url}/org/gated" in refused and "no access" in refused
        assert not (tmp_path / "hub" / "models--org--gated" / "blobs").is_dir() or not any(
            (tmp_path / "hub" / "models--org--gated" / "blobs").iterdir()
        )

        allowed = run_cli("pull", "org/gated", home=tmp_path, endpoint=server.url, HF_TOKEN="hf_ok")
        assert allowed.returncode == 0, allowed.stderr
        assert {g.authorization for g in server.downloads()} == {"Bearer hf_ok"}
        assert (snapshot(tmp_path, "org/gated", server) / "model.safetensors").read_bytes() == bytes(2048)


def test_offline_mode_downloads_nothing_and_says_so(fake_hub: FakeHub, tmp_path: Path) -> None:
    message = one_line_error(run_cli("pull", "org/tiny", home=tmp_path, endpoint=fake_hub.url, HF_HUB_OFFLINE="1"))
    assert "HF_HUB_OFFLINE" in message
    assert fake_hub.requests == []

    assert run_cli("pull", "org/tiny", home=tmp_path, endpoint=fake_hub.url).returncode == 0
    fake_hub.requests.clear()
    cached = run_cli("pull", "org/tiny", home=tmp_path, endpoint=fake_hub.url, HF_HUB_OFFLINE="1")
    assert cached.returncode == 0 and "HF_HUB_OFFLINE" in cached.stdout
    assert fake_hub.requests == []


def test_unknown_models_and_revisions_exit_2_with_one_line(fake_hub: FakeHub, tmp_path: Path) -> None:
    missing = one_line_error(run_cli("pull", "org/nope", home=tmp_path, endpoint=fake_hub.url))
    assert "org/nope" in missing
    fake_hub.requests.clear()
    typo = one_line_error(run_cli("pull", "florence-2-bse", home=tmp_path, endpoint=fake_hub.url))
    assert "florence-2-base" in typo and fake_hub.requests == []  # not an id: the hub is not asked
    revision = one_line_error(run_cli("pull", "org/tiny", "--revision", "v9", home=tmp_path, endpoint=fake_hub.url))
    assert "v9" in revision
    local_dir = one_line_error(run_cli("pull", str(tmp_path), home=tmp_path, endpoint=fake_hub.url))
    assert str(tmp_path) in local_dir


def test_an_unreachable_hub_is_one_line_unless_the_cache_has_the_model(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    message = one_line_error(run_cli("pull", "org/tiny", home=tmp_path, endpoint=closed))
    assert closed in message

    with FakeHub() as server:
        server.add_repo("org/tiny", TINY)
        assert run_cli("pull", "org/tiny", home=tmp_path, endpoint=server.url).returncode == 0
    cached = run_cli("pull", "org/tiny", home=tmp_path, endpoint=closed)
    assert cached.returncode == 0, cached.stderr
    assert closed in cached.stdout and "org/tiny" in cached.stdout


def test_a_preset_pulls_its_hub_id_and_the_cache_listing_names_it(tmp_path: Path) -> None:
    with FakeHub() as server:
        server.add_repo("florence-community/Florence-2-base", dict(TINY))
        server.add_repo("org/other", {"config.json": b'{"model_type": "bert"}'})
        result = run_cli("pull", "florence-2-base", home=tmp_path, endpoint=server.url)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("florence-2-base (florence-community/Florence-2-base): ")
        other = run_cli("pull", "org/other", "--dry-run", home=tmp_path, endpoint=server.url)
        assert other.returncode == 0 and "note:" in other.stdout and "'bert'" in other.stdout
        assert run_cli("pull", "org/other", home=tmp_path, endpoint=server.url).returncode == 0
    listing = local_listing(tmp_path, "http://127.0.0.1:9")  # the listing reads the cache only
    assert listing["florence-community/Florence-2-base"]["presets"] == ["florence-2-base"]
    assert listing["org/other"]["presets"] == []
    table = run_cli("models", "--local", home=tmp_path, endpoint="http://127.0.0.1:9")
    assert table.returncode == 0, table.stderr
    row = next(line for line in table.stdout.splitlines() if line.startswith("florence-community/Florence-2-base "))
    assert "florence-2-base" in row and "complete" in row
    assert table.stdout.splitlines()[-1].startswith("2 models")


def test_an_empty_cache_lists_nothing(tmp_path: Path) -> None:
    result = run_cli("models", "--local", "--json", home=tmp_path, endpoint="http://127.0.0.1:9")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["models"] == []
