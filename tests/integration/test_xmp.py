"""The xmp sink, read back with exiftool: embedded (JPEG, PNG, WebP, TIFF) and as .xmp sidecars."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from descry import __version__, schemas
from descry.errors import OutputError
from descry.sinks.xmp import XmpSink

pytest.importorskip("pyexiv2", reason="the xmp sink needs: pip install -c constraints.txt 'descry[xmp]'")
pytestmark = pytest.mark.skipif(
    shutil.which("exiftool") is None,
    reason="exiftool is not installed (apt-get install -y libimage-exiftool-perl)",
)

CAPTION = "A red kite flies over a green field under a pale blue sky; the string leads to a child — ünïcödé."
WRITER = f"descry {__version__} (florence-2-base)"


def _enrichment(tags: list[str], caption: str = CAPTION) -> schemas.Enrichment:
    return schemas.Enrichment(
        name="photo",
        asset_id="asset-7",
        caption=caption,
        source="florence-2-base",
        tags=[schemas.Tag(name=t, source="keyword") for t in tags],
    )


def _image(path: Path, fmt: str) -> Path:
    img = Image.new("RGB", (96, 64), (30, 120, 200))
    for x in range(0, 96, 3):
        for y in range(0, 64, 5):
            img.putpixel((x, y), ((x * 7) % 256, (y * 11) % 256, (x + y) % 256))
    img.save(path, fmt)
    return path


def _exiftool(*args: str) -> None:
    subprocess.run(["exiftool", "-q", "-overwrite_original", *args], check=True, capture_output=True)


def _existing_metadata(path: Path, iim: bool) -> None:
    """What a photographer's file already carries: credit, rights, a creator and a human keyword."""
    args = ["-XMP-dc:Creator=Ann Example", "-XMP-dc:Subject=portfolio"]
    if path.suffix.lower() in {".jpg", ".tif", ".webp", ".png"}:
        args += ["-EXIF:Artist=Ann Example", "-EXIF:Copyright=(c) 2024 Ann Example"]
    if iim:
        args += ["-IPTC:Keywords=portfolio", "-IPTC:By-line=Ann Example"]
    _exiftool(*args, str(path))


def _read(path: Path) -> dict[str, Any]:
    out = subprocess.run(
        ["exiftool", "-j", "-G1", "-a", "-charset", "iptc=UTF8", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out)[0]


def _as_list(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _pixels(path: Path) -> tuple[str, tuple[int, int], bytes]:
    with Image.open(path) as img:
        img.load()
        return img.mode, img.size, img.tobytes()


def _path_ref(path: Path) -> schemas.ImageRef:
    return schemas.ImageRef(kind=schemas.SourceKind.path, name=path.name, uri=str(path))


def _assert_written(meta: dict[str, Any], keywords: list[str]) -> None:
    assert meta["XMP-dc:Description"] == CAPTION
    assert _as_list(meta["XMP-dc:Subject"]) == keywords
    assert meta["XMP-iptcCore:AltTextAccessibility"] == CAPTION
    assert meta["XMP-photoshop:CaptionWriter"] == WRITER
    assert meta["XMP-descry:CaptionModel"] == "florence-2-base"
    assert str(meta["XMP-descry:MachineGenerated"]) == "True"
    assert meta["XMP-descry:AssetId"] == "asset-7"
    assert "edited" in _as_list(meta["XMP-xmpMM:HistoryAction"])
    assert WRITER in _as_list(meta["XMP-xmpMM:HistorySoftwareAgent"])


@pytest.mark.parametrize(
    ("fmt", "suffix", "iim"),
    [
        ("JPEG", ".jpg", True),
        ("PNG", ".png", False),
        ("WEBP", ".webp", False),
        ("TIFF", ".tif", True),
    ],
)
async def test_embedded_keeps_pixels_and_other_metadata(
    tmp_path: Path, fmt: str, suffix: str, iim: bool
) -> None:
    image = _image(tmp_path / f"photo{suffix}", fmt)
    _existing_metadata(image, iim)
    pixels = _pixels(image)
    sink = XmpSink(mode="embed")

    await sink.deliver(_enrichment(["kite", "field", "sky"]), _path_ref(image))
    meta = _read(image)
    _assert_written(meta, ["portfolio", "kite", "field", "sky"])
    assert meta["XMP-dc:Creator"] == "Ann Example"
    assert meta["IFD0:Artist"] == "Ann Example" and meta["IFD0:Copyright"] == "(c) 2024 Ann Example"
    if iim:
        assert meta["IPTC:Caption-Abstract"] == CAPTION
        assert _as_list(meta["IPTC:Keywords"]) == ["portfolio", "kite", "field", "sky"]
        assert meta["IPTC:By-line"] == "Ann Example"
        assert meta["IPTC:CodedCharacterSet"] == "UTF8"
    else:
        assert not any(k.startswith("IPTC:") for k in meta)
    assert _pixels(image) == pixels
    assert sorted(p.name for p in tmp_path.iterdir()) == [image.name]

    await sink.deliver(_enrichment(["kite", "child"]), _path_ref(image))
    again = _read(image)
    assert _as_list(again["XMP-dc:Subject"]) == ["portfolio", "kite", "child"]
    assert _as_list(again["XMP-xmpMM:HistoryAction"]) == ["edited", "edited"]
    if iim:
        assert _as_list(again["IPTC:Keywords"]) == ["portfolio", "kite", "child"]
    assert _pixels(image) == pixels


@pytest.mark.parametrize(
    ("fmt", "suffix", "naming", "sidecar"),
    [
        ("JPEG", ".jpg", "stem", "photo.xmp"),
        ("PNG", ".png", "full", "photo.png.xmp"),
    ],
)
async def test_sidecar_leaves_the_image_untouched(
    tmp_path: Path, fmt: str, suffix: str, naming: str, sidecar: str
) -> None:
    image = _image(tmp_path / f"photo{suffix}", fmt)
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    sink = XmpSink(mode="sidecar", sidecar_name=naming)  # type: ignore[arg-type]
    await sink.deliver(_enrichment(["kite", "field"]), _path_ref(image))

    assert hashlib.sha256(image.read_bytes()).hexdigest() == digest
    target = tmp_path / sidecar
    meta = _read(target)
    assert meta["File:FileType"] == "XMP"
    _assert_written(meta, ["kite", "field"])

    _exiftool("-XMP-dc:Creator=Ann Example", str(target))
    await sink.deliver(_enrichment(["sky"]), _path_ref(image))
    meta = _read(target)
    assert meta["XMP-dc:Creator"] == "Ann Example"
    assert _as_list(meta["XMP-dc:Subject"]) == ["sky"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([image.name, sidecar])


async def test_format_without_embedded_xmp_falls_back_to_a_sidecar(tmp_path: Path) -> None:
    image = _image(tmp_path / "anim.gif", "GIF")
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    await XmpSink(mode="embed").deliver(_enrichment(["kite"]), _path_ref(image))
    assert hashlib.sha256(image.read_bytes()).hexdigest() == digest
    _assert_written(_read(tmp_path / "anim.gif.xmp"), ["kite"])


async def test_upload_is_written_as_a_tagged_copy_in_output_dir(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (1, 2, 3)).save(buf, "JPEG")
    ref = schemas.ImageRef(kind=schemas.SourceKind.upload, name="in/upload.jpg", data=buf.getvalue())
    out = tmp_path / "out"
    await XmpSink(mode="embed", output_dir=out).deliver(_enrichment(["kite"]), ref)
    meta = _read(out / "in" / "upload.jpg")
    _assert_written(meta, ["kite"])
    assert meta["IPTC:Caption-Abstract"] == CAPTION

    url_ref = schemas.ImageRef(kind=schemas.SourceKind.url, name="x.jpg", uri="https://example.com/x.jpg")
    with pytest.raises(OutputError, match="DESCRY_SINKS__XMP__MODE=sidecar"):
        await XmpSink(mode="embed", output_dir=out).deliver(_enrichment(["kite"]), url_ref)
    with pytest.raises(OutputError, match="DESCRY_SINKS__XMP__OUTPUT_DIR"):
        await XmpSink(mode="sidecar").deliver(_enrichment(["kite"]), url_ref)


async def test_a_damaged_image_is_left_as_it_was(tmp_path: Path) -> None:
    image = tmp_path / "broken.png"
    good = _image(tmp_path / "good.png", "PNG").read_bytes()
    image.write_bytes(good[:60])
    before = image.read_bytes()
    with pytest.raises(OutputError, match="original is unchanged"):
        await XmpSink(mode="embed").deliver(_enrichment(["kite"]), _path_ref(image))
    assert image.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("mode", ["embed", "sidecar"])
def test_done_is_descry_s_own_marker(tmp_path: Path, mode: str) -> None:
    image = _image(tmp_path / "photo.jpg", "JPEG")
    _existing_metadata(image, iim=True)  # a human's XMP is not descry's marker
    _exiftool("-o", str(tmp_path / "photo.xmp"), "-XMP-dc:Creator=Ann Example", str(image))
    sink = XmpSink(mode)  # type: ignore[arg-type]
    ref = _path_ref(image)
    assert not sink.done(ref)
    sink.write(_enrichment(["kite"]), ref)
    assert sink.done(ref)
