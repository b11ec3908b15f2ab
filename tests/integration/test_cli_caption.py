"""descry caption end to end: the real console script on a tiny BLIP model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import image_bytes, mixed_folder
from tests.tiny.blip import build_tiny_blip


@pytest.fixture(scope="module")
def tiny_blip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_blip(tmp_path_factory.mktemp("tiny-blip"))


def run_cli(*args: str, cwd: Path, **extra_env: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DESCRY_")}
    env.update(HF_HUB_OFFLINE="1", DESCRY_DECODE_THREADS="2", **extra_env)
    return subprocess.run(
        [sys.executable, "-m", "descry.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def summary(result: subprocess.CompletedProcess[str]) -> dict:
    return json.loads(result.stderr.strip().splitlines()[-1])


def test_folder_gets_txt_sidecars_failures_are_reported_and_resume_skips(tiny_blip: Path, tmp_path: Path) -> None:
    files = mixed_folder(tmp_path / "photos")
    result = run_cli("caption", str(tmp_path / "photos"), "--model", str(tiny_blip), "--max-tokens", "6", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    data = summary(result)
    assert (data["total"], data["ok"], data["failed"], data["skipped"]) == (20, 18, 2, 0)
    assert sorted(f["code"] for f in data["failures"]) == ["corrupt_image", "unsupported_format"]
    assert {Path(f["name"]).name for f in data["failures"]} == {"corrupt.jpg", "notes.jpg"}
    sidecars = sorted((tmp_path / "photos").rglob("*.txt"))
    assert len(sidecars) == 18
    assert {p.with_suffix("") for p in sidecars} == {p.with_suffix("") for p in files["good"]}
    assert all(p.read_text().endswith("\n") for p in sidecars)
    assert not list((tmp_path / "photos").rglob("*.tmp"))

    # a second run with a model that cannot load: nothing is left to caption, so no model work happens
    again = run_cli("caption", str(tmp_path / "photos"), "--skip-existing", "--model", "/no/such/model", cwd=tmp_path)
    data = summary(again)
    assert (data["ok"], data["skipped"], data["failed"]) == (0, 18, 2)
    assert {f["code"] for f in data["failures"]} == {"corrupt_image", "unsupported_format"}


def test_jsonl_output_and_resume(tiny_blip: Path, tmp_path: Path) -> None:
    mixed_folder(tmp_path / "photos", count=6)
    out = tmp_path / "out" / "captions.jsonl"
    args = ("caption", str(tmp_path / "photos"), "--model", str(tiny_blip), "-f", "jsonl", "-o", str(out))
    first = run_cli(*args, "--max-tokens", "5", cwd=tmp_path)
    assert first.returncode == 1
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 4
    assert all({"name", "caption", "tags", "source", "image"} <= set(line) for line in lines)
    second = run_cli(*args, "--skip-existing", cwd=tmp_path)
    assert summary(second)["skipped"] == 4
    assert len(out.read_text().splitlines()) == 4


def test_json_sidecars_into_an_output_folder_mirror_the_tree(tiny_blip: Path, tmp_path: Path) -> None:
    files = mixed_folder(tmp_path / "photos", count=8)
    out = tmp_path / "meta"
    result = run_cli(
        "caption", str(tmp_path / "photos"), "--model", str(tiny_blip), "-f", "json", "-o", str(out),
        "--num-beams", "2", "--repetition-penalty", "1.1", cwd=tmp_path,
    )
    assert result.returncode == 1
    written = sorted(out.rglob("*.json"))
    assert len(written) == len(files["good"])
    assert (out / "sub").is_dir()
    doc = json.loads(written[0].read_text())
    assert doc["image"]["width"] > 0 and doc["source"] == str(tiny_blip)
    first = doc["attempts"][0]["params"]
    assert (first["num_beams"], first["repetition_penalty"]) == (2, 1.1)
    assert not list((tmp_path / "photos").rglob("*.json"))


def test_single_file_prints_and_writes_its_sidecar(tiny_blip: Path, tmp_path: Path) -> None:
    photo = tmp_path / "one.png"
    photo.write_bytes(image_bytes("PNG", (50, 40)))
    result = run_cli("caption", str(photo), "--model", str(tiny_blip), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "one.txt").is_file()
    assert summary(result)["ok"] == 1


@pytest.fixture
def image_server(tmp_path: Path) -> Iterator[str]:
    root = tmp_path / "www"
    root.mkdir()
    (root / "cat.jpg").write_bytes(image_bytes("JPEG", (64, 64)))
    handler = partial(SimpleHTTPRequestHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_url_caption_is_printed(tiny_blip: Path, tmp_path: Path, image_server: str) -> None:
    result = run_cli("caption", f"{image_server}/cat.jpg", "--model", str(tiny_blip), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    assert not list(tmp_path.glob("*.txt"))
    missing = run_cli("caption", f"{image_server}/nope.jpg", "--model", str(tiny_blip), cwd=tmp_path)
    assert missing.returncode == 1
    assert summary(missing)["failures"][0]["code"] == "not_found"


def test_unloadable_model_is_one_clear_error(tmp_path: Path) -> None:
    photo = tmp_path / "one.png"
    photo.write_bytes(image_bytes("PNG"))
    result = run_cli("caption", str(photo), "--model", "nobody/no-such-model-xyz", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "HF_HOME" in result.stderr


def test_missing_input_and_models_listing(tmp_path: Path) -> None:
    result = run_cli("caption", str(tmp_path / "nothing-here"), cwd=tmp_path)
    assert result.returncode == 2
    listing = run_cli("models", "--json", cwd=tmp_path)
    presets = json.loads(listing.stdout)
    names = {p["name"] for p in presets}
    assert {"florence-2-base", "blip-base", "qwen2.5-vl-7b", "phi-3.5-vision", "smolvlm"} <= names
    assert [p["name"] for p in presets if p["default"]] == ["florence-2-base"]


def test_invalid_flags_and_settings_are_one_clear_error(tmp_path: Path) -> None:
    photo = tmp_path / "one.png"
    photo.write_bytes(image_bytes("PNG"))
    bad_flag = run_cli("caption", str(photo), "--quantization", "3bit", cwd=tmp_path)
    assert bad_flag.returncode == 2 and "Traceback" not in bad_flag.stderr
    (tmp_path / ".env").write_text("DESCRY_MODEL__BATCH_SIZE=lots\n")
    bad_env = run_cli("caption", str(photo), cwd=tmp_path)
    assert bad_env.returncode == 2 and "Traceback" not in bad_env.stderr
    assert "batch_size" in bad_env.stderr


def test_piped_stderr_is_only_the_json_summary(tiny_blip: Path, tmp_path: Path) -> None:
    mixed_folder(tmp_path / "photos", count=4)
    result = run_cli("caption", str(tmp_path / "photos"), "--model", str(tiny_blip), "--max-tokens", "4", cwd=tmp_path)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    data = json.loads(lines[0])
    assert {"total", "ok", "failed", "skipped", "seconds", "failures"} <= set(data)
    assert (data["total"], data["ok"], data["failed"]) == (4, 2, 2)
    assert all(isinstance(note, str) for note in data.get("warnings", []))

    (tmp_path / "empty").mkdir()
    empty = run_cli("caption", str(tmp_path / "empty"), cwd=tmp_path)
    assert empty.returncode == 1
    lines = [line for line in empty.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and json.loads(lines[0])["total"] == 0


NOISY_RUN = """
import logging, sys, warnings
import descry.sinks.sidecar
from descry.cli import main

write = descry.sinks.sidecar.SidecarSink.write

def noisy_write(self, enrichment, ref, policy=None):  # what descry's own warnings and a chatty library do mid-run
    logging.getLogger("descry.enrich.tags").warning("tagging failed, returning no tags: %s", "test")
    warnings.warn("a library deprecation", UserWarning, stacklevel=1)
    sys.stderr.write("\\rDownloading: 0%|   |\\rDownloading: 100%|###|\\n")
    return write(self, enrichment, ref, policy)

descry.sinks.sidecar.SidecarSink.write = noisy_write
sys.argv[0] = "descry"
main()
"""


def test_piped_stderr_stays_one_json_line_when_the_run_logs_and_warns(tiny_blip: Path, tmp_path: Path) -> None:
    mixed_folder(tmp_path / "photos", count=3)
    script = tmp_path / "noisy.py"
    script.write_text(NOISY_RUN)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DESCRY_")}
    env.update(HF_HUB_OFFLINE="1", DESCRY_DECODE_THREADS="2")
    args = [str(tmp_path / "photos"), "--model", str(tiny_blip), "--max-tokens", "4"]
    result = subprocess.run(
        [sys.executable, str(script), "caption", *args], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=240,
    )
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    data = json.loads(lines[0])
    assert (data["total"], data["ok"], data["failed"]) == (3, 1, 2)
    notes = " ".join(data["warnings"])
    assert "tagging failed" in notes and "a library deprecation" in notes
    assert "Downloading" not in notes


@pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool is not installed")
def test_sink_xmp_writes_xmp_and_the_configured_default_is_honoured(tiny_blip: Path, tmp_path: Path) -> None:
    pytest.importorskip("pyexiv2")
    files = mixed_folder(tmp_path / "photos", count=5)
    result = run_cli("caption", str(tmp_path / "photos"), "--sink", "xmp", "--model", str(tiny_blip),
                     "--max-tokens", "5", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert summary(result)["ok"] == 3
    assert not list((tmp_path / "photos").rglob("*.txt"))  # --sink alone: only the sinks named
    for image in files["good"]:
        meta = json.loads(subprocess.run(["exiftool", "-j", "-G1", str(image.with_name(image.name + ".xmp"))],
                                         capture_output=True, text=True, check=True).stdout)[0]
        assert str(meta["XMP-descry:MachineGenerated"]) == "True" and meta["XMP-dc:Description"]
    # DESCRY_SINKS__DEFAULT picks the sinks when the command names none; resume asks them (the XMP marker)
    again = run_cli("caption", str(tmp_path / "photos"), "--skip-existing", "--model", "/no/such/model",
                    cwd=tmp_path, DESCRY_SINKS__DEFAULT='["xmp"]')
    assert (summary(again)["skipped"], summary(again)["ok"]) == (3, 0)
    assert not list((tmp_path / "photos").rglob("*.txt"))


def test_an_unknown_sink_is_exit_2_before_any_work(tmp_path: Path) -> None:
    photo = tmp_path / "one.png"
    photo.write_bytes(image_bytes("PNG"))
    caption = run_cli("caption", str(photo), "--sink", "carrier-pigeon", "--model", "/no/such/model", cwd=tmp_path)
    default = run_cli("caption", str(photo), "--model", "/no/such/model", cwd=tmp_path,
                      DESCRY_SINKS__DEFAULT='["nope"]')
    batch = run_cli("batch", str(tmp_path), "--sink", "carrier-pigeon", "--model", "/no/such/model", cwd=tmp_path)
    for result in (caption, default, batch):
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr and "jsonl" in result.stderr  # the known sinks are listed
    assert not list(tmp_path.glob("*.txt")) and not (tmp_path / "results.jsonl").exists()
