"""Phone and camera formats through the real `descry caption` command: a folder of HEIC, AVIF and DNG
files (made here: pillow-heif, Pillow's AVIF encoder, a minimal DNG that LibRaw demosaics) is found,
decoded and captioned by an OpenAI-compatible model (the fake server); one caption per image."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from descry import formats
from tests.fakes.dng import make_dng
from tests.fakes.openai_server import FakeOpenAIServer

MODEL = "fake-vlm"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(models=[MODEL]) as srv:
        yield srv


def run_cli(*args: str, cwd: Path, **extra_env: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DESCRY_")}
    env.update(DESCRY_DECODE_THREADS="2", DESCRY_AGENT__ENABLED="false", **extra_env)
    return subprocess.run(
        [sys.executable, "-m", "descry.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def summary(result: subprocess.CompletedProcess[str]) -> dict:
    return json.loads(result.stderr.strip().splitlines()[-1])


def picture(size: tuple[int, int]) -> Image.Image:
    img = Image.new("RGB", size, (200, 40, 40))
    img.paste((30, 30, 220), (0, 0, size[0] // 2, size[1]))
    return img


def encoded(img: Image.Image, fmt: str) -> bytes:
    formats.heif_opener()  # registers pillow-heif's HEIF encoder with Pillow
    buf = io.BytesIO()
    img.save(buf, fmt, quality=80)
    return buf.getvalue()


def phone_and_camera_folder(root: Path) -> dict[str, tuple[int, int]]:
    """Files as phones and cameras name them (upper-case extensions), and each one's upright size."""
    (root / "raw").mkdir(parents=True)
    files = {
        "IMG_0001.HEIC": (encoded(picture((96, 64)), "HEIF"), (96, 64)),
        "IMG_0002.heif": (encoded(picture((40, 72)), "HEIF"), (40, 72)),
        "pixel.AVIF": (encoded(picture((88, 56)), "AVIF"), (88, 56)),
        "raw/DSC_0001.DNG": (make_dng(256, 192, orientation=6), (192, 256)),
        "raw/DSC_0002.dng": (make_dng(256, 192, preview=(240, 180)), (256, 192)),
    }
    for name, (data, _size) in files.items():
        (root / name).write_bytes(data)
    (root / "notes.txt").write_text("not an image")
    return {name: size for name, (_data, size) in files.items()}


def test_heic_avif_and_dng_in_a_folder_are_found_decoded_and_captioned(
    server: FakeOpenAIServer, tmp_path: Path
) -> None:
    server.reset()
    expected = phone_and_camera_folder(tmp_path / "photos")
    out = tmp_path / "captions.jsonl"
    result = run_cli(
        "caption", str(tmp_path / "photos"), "--base-url", server.base_url, "--model", MODEL,
        "-f", "jsonl", "-o", str(out), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = summary(result)
    assert (data["total"], data["ok"], data["failed"]) == (5, 5, 0)
    lines = {
        Path(row["name"]).relative_to(tmp_path / "photos").as_posix(): row
        for row in map(json.loads, out.read_text().splitlines())
    }
    assert set(lines) == set(expected)
    for name, row in lines.items():
        assert (row["image"]["width"], row["image"]["height"]) == expected[name], name
        assert (
            row["image"]["format"]
            == {"HEIC": "HEIF", "HEIF": "HEIF", "AVIF": "AVIF", "DNG": "DNG"}[name.rsplit(".", 1)[1].upper()]
        )
        assert row["caption"].startswith("image "), row["caption"]  # the fake saw exactly one decoded image
    assert len(server.chat_requests) == 5
    # the model saw each picture upright: the portrait DNG arrives taller than wide
    sent = [line for row in lines.values() for line in row["caption"].splitlines() if line.startswith("image ")]
    sizes = sorted(tuple(int(v) for v in line.split()[1].split("x")) for line in sent)
    assert sum(1 for w, h in sizes if h > w) == 2  # IMG_0002.heif and the turned DNG


def test_a_raw_file_without_its_decoder_fails_alone_naming_the_pip_command(
    server: FakeOpenAIServer, tmp_path: Path
) -> None:
    server.reset()
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.dng").write_bytes(make_dng())
    (folder / "b.avif").write_bytes(encoded(picture((64, 48)), "AVIF"))
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "rawpy.py").write_text("raise ImportError('rawpy is blocked for this test')\n")
    result = run_cli(
        "caption", str(folder), "--base-url", server.base_url, "--model", MODEL, cwd=tmp_path,
        PYTHONPATH=os.pathsep.join([str(blocker), os.environ.get("PYTHONPATH", "")]),
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    data = summary(result)
    assert (data["ok"], data["failed"]) == (1, 1)
    failure = data["failures"][0]
    assert failure["code"] == "unsupported_format" and Path(failure["name"]).name == "a.dng"
    assert formats.RAW_INSTALL in failure["message"] and "\n" not in failure["message"]
