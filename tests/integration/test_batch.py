"""`descry batch` on the local engine: the real console script on a tiny BLIP model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from descry.batch import BatchOutput
from descry.errors import InputError, MissingDependency
from tests.conftest import mixed_folder
from tests.tiny.blip import build_tiny_blip

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_blip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_blip(tmp_path_factory.mktemp("tiny-blip"))


def run_batch_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`descry batch` in a subprocess, with greedy short generations and the agent off (one attempt)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("DESCRY_")}
    base.update(HF_HUB_OFFLINE="1", DESCRY_DECODE_THREADS="2", DESCRY_AGENT__ENABLED="false", **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "descry.cli", "batch", *args],
        cwd=cwd,
        env=base,
        capture_output=True,
        text=True,
        timeout=240,
    )


def summary(result: subprocess.CompletedProcess[str]) -> dict:
    return json.loads(result.stderr.strip().splitlines()[-1])


def flat(text: str) -> str:
    """Terminal output with rich's line wrapping undone."""
    return " ".join(text.split())


def jsonl_rows(path: Path) -> dict[str, dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    by_name = {row["name"]: row for row in rows}
    assert len(by_name) == len(rows), "an image was written twice"
    return by_name


def test_folder_to_jsonl_with_sidecars_then_resume_skips_done(tiny_blip: Path, tmp_path: Path) -> None:
    files = mixed_folder(tmp_path / "photos", count=12)
    out = tmp_path / "results.jsonl"
    args = ("photos", "-m", str(tiny_blip), "--max-tokens", "4", "--batch-size", "4", "-o", str(out))
    first = run_batch_cli(*args, "--sink", "sidecar", cwd=tmp_path)
    assert first.returncode == 1, first.stderr
    data = summary(first)
    assert (data["total"], data["ok"], data["failed"], data["skipped"]) == (12, 10, 2, 0)
    assert sorted((Path(f["name"]).name, f["code"]) for f in data["failures"]) == [
        ("corrupt.jpg", "corrupt_image"),
        ("notes.jpg", "unsupported_format"),
    ]
    rows = jsonl_rows(out)
    assert sorted(rows) == sorted(str(p.relative_to(tmp_path)) for p in files["good"])
    for row in rows.values():
        assert {"name", "caption", "tags", "source", "image", "attempts"} <= set(row)
        assert row["source"] == str(tiny_blip) and row["image"]["width"] > 0
        assert len(row["attempts"]) == 1
    sidecars = sorted((tmp_path / "photos").rglob("*.txt"))
    assert {p.with_suffix("") for p in sidecars} == {p.with_suffix("") for p in files["good"]}

    # nothing left but the two bad files: the model (here one that cannot load) is never needed
    again = run_batch_cli("photos", "-m", "/no/such/model", "-o", str(out), cwd=tmp_path)
    data = summary(again)
    assert again.returncode == 1
    assert (data["total"], data["ok"], data["failed"], data["skipped"]) == (12, 0, 2, 10)
    assert jsonl_rows(out).keys() == rows.keys()


def test_parquet_has_the_same_rows_as_jsonl(tiny_blip: Path, tmp_path: Path) -> None:
    mixed_folder(tmp_path / "photos", count=8)
    common = ("photos", "-m", str(tiny_blip), "--max-tokens", "4")
    as_jsonl = run_batch_cli(*common, "-o", "out.jsonl", cwd=tmp_path)
    as_parquet = run_batch_cli(*common, "-o", "out.parquet", cwd=tmp_path)
    assert as_jsonl.returncode == as_parquet.returncode == 1
    assert summary(as_parquet)["failures"] == summary(as_jsonl)["failures"]
    assert not (tmp_path / "out.parquet.pending.jsonl").exists()

    expected = jsonl_rows(tmp_path / "out.jsonl")
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.num_rows == len(expected) == 6
    for row in table.to_pylist():
        want = expected[row["name"]]
        assert json.loads(row["enrichment"]).keys() == want.keys()
        assert (row["caption"], row["source"], row["width"], row["height"], row["format"]) == (
            want["caption"],
            want["source"],
            want["image"]["width"],
            want["image"]["height"],
            want["image"]["format"],
        )
        assert [t["name"] for t in row["tags"]] == [t["name"] for t in want["tags"]]


@pytest.fixture
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def test_s3_prefix_objects_only(
    tiny_blip: Path, tmp_path: Path, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    creds = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
    for name, value in creds.items():
        monkeypatch.setenv(name, value)
    files = mixed_folder(tmp_path / "photos", count=5)
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.create_bucket(Bucket="assets")
    for path in [*files["good"], *files["bad"]]:
        client.put_object(Bucket="assets", Key=f"shoot/{path.name}", Body=path.read_bytes())
    client.put_object(Bucket="assets", Key="other/elsewhere.jpg", Body=files["good"][0].read_bytes())

    env = {"DESCRY_SOURCES__S3_ENDPOINT_URL": s3_endpoint}
    result = run_batch_cli(
        "s3://assets/shoot/", "-m", str(tiny_blip), "--max-tokens", "4", env=env, cwd=tmp_path
    )
    data = summary(result)
    assert (data["total"], data["ok"], data["failed"]) == (5, 3, 2), result.stderr
    rows = jsonl_rows(tmp_path / "results.jsonl")
    assert sorted(rows) == sorted(f"s3://assets/shoot/{p.name}" for p in files["good"])


def test_wrong_options_are_refused_before_any_work(tmp_path: Path) -> None:
    mixed_folder(tmp_path / "photos", count=3)
    local_with_address = run_batch_cli("photos", "--address", "auto", cwd=tmp_path)
    assert local_with_address.returncode == 2
    assert "--engine ray" in flat(local_with_address.stderr)
    bad_suffix = run_batch_cli("photos", "-o", "results.csv", cwd=tmp_path)
    assert bad_suffix.returncode == 2
    assert "*.jsonl or *.parquet" in flat(bad_suffix.stderr)
    bad_sink = run_batch_cli("photos", "--sink", "nope", cwd=tmp_path)
    assert bad_sink.returncode == 2
    assert "unknown sink 'nope'" in flat(bad_sink.stderr)
    assert not (tmp_path / "results.jsonl").exists()


def _line(name: str, caption: str = "a caption") -> str:
    return json.dumps({"name": name, "caption": caption, "source": "m", "tags": [], "image": None}) + "\n"


def test_parquet_journal_left_by_a_crash_is_folded_in(tmp_path: Path) -> None:
    output = BatchOutput(tmp_path / "out.parquet")
    crashed = '{"name": "c.jp'  # the crash cut the last line short
    output.journal.write_text(_line("a.jpg") + _line("b.jpg") + crashed)
    assert output.done_names() == {"a.jpg", "b.jpg"}
    output.recover()
    assert not output.journal.exists()
    assert pq.read_table(output.path).column("name").to_pylist() == ["a.jpg", "b.jpg"]

    output.journal.write_text(_line("b.jpg", "again") + _line("c.jpg"))
    output.finish()
    table = pq.read_table(output.path)
    assert table.column("name").to_pylist() == ["a.jpg", "b.jpg", "c.jpg"]
    assert table.column("caption").to_pylist()[1] == "a caption"
    assert output.done_names() == {"a.jpg", "b.jpg", "c.jpg"}


def test_parquet_without_pyarrow_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(MissingDependency) as info:
        BatchOutput(tmp_path / "out.parquet")
    assert '-e ".[ray]"' in str(info.value)
    with pytest.raises(InputError):
        BatchOutput(tmp_path / "out.txt")
    assert BatchOutput(tmp_path / "out.jsonl").journal == tmp_path / "out.jsonl"
