"""Metadata policies, read back with exiftool: a person's caption survives every default run, descry
replaces only what it provably wrote, other languages stay, RAW files only ever get a sidecar."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from descry import schemas
from descry.schemas import MetadataPolicy
from descry.sinks.xmp import XmpSink

pytest.importorskip("pyexiv2", reason="the xmp sink needs: pip install -c constraints.txt 'descry[xmp]'")
pytestmark = pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool is not installed")

HUMAN = "Eiffel Tower at dusk, shot for ACME campaign"
FIRST = "A tall iron tower stands against an orange evening sky over the city."
SECOND = "An iron lattice tower lit by the setting sun above rooftops and trees."


def _enrichment(
    caption: str, tags: tuple[str, ...] = ("tower", "dusk"), language: str | None = None
) -> schemas.Enrichment:
    tag_list = [schemas.Tag(name=t, source="keyword") for t in tags]
    return schemas.Enrichment(name="photo", caption=caption, source="blip-base", tags=tag_list, language=language)


def _jpeg(path: Path) -> Path:
    img = Image.new("RGB", (80, 60), (200, 120, 40))
    for x in range(0, 80, 4):
        img.putpixel((x, x % 60), (x, 255 - x, 30))
    img.save(path, "JPEG")
    return path


def _exiftool(path: Path, *args: str) -> None:
    subprocess.run(["exiftool", "-q", "-overwrite_original", *args, str(path)], check=True, capture_output=True)


def _human_photo(path: Path) -> Path:
    """A JPEG whose caption a person wrote, in XMP, IPTC and EXIF, with a keyword and a French alternative."""
    _jpeg(path)
    _exiftool(
        path,
        f"-XMP-dc:Description={HUMAN}",
        "-XMP-dc:Description-fr=Tour Eiffel au crépuscule",
        f"-IPTC:Caption-Abstract={HUMAN}",
        f"-EXIF:ImageDescription={HUMAN}",
        "-XMP-dc:Subject=paris",
        "-IPTC:Keywords=paris",
        "-charset",
        "iptc=UTF8",
    )
    return path


def _read(path: Path) -> dict[str, Any]:
    out = subprocess.run(
        ["exiftool", "-j", "-G1", "-a", "-charset", "iptc=UTF8", "-XMP:all", "-IPTC:all", "-EXIF:all",
         str(path)],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return json.loads(out)[0]


def _as_list(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _ref(path: Path) -> schemas.ImageRef:
    return schemas.ImageRef(kind=schemas.SourceKind.path, name=path.name, uri=str(path))


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _assert_human_caption(meta: dict[str, Any]) -> None:
    assert meta["XMP-dc:Description"] == HUMAN
    assert meta["IPTC:Caption-Abstract"] == HUMAN
    assert meta["IFD0:ImageDescription"] == HUMAN
    assert meta["XMP-dc:Description-fr"] == "Tour Eiffel au crépuscule"


@pytest.mark.parametrize("policy", ["replace-machine", "fill"])
async def test_a_person_s_caption_survives_an_embedded_run(tmp_path: Path, policy: MetadataPolicy) -> None:
    photo = _human_photo(tmp_path / "eiffel.jpg")
    sink = XmpSink(mode="embed", policy=policy)
    await sink.deliver(_enrichment(FIRST), _ref(photo))
    await sink.deliver(_enrichment(SECOND, ("tower", "sunset")), _ref(photo))
    meta = _read(photo)
    _assert_human_caption(meta)
    assert "XMP-iptcCore:AltTextAccessibility" in meta  # an empty field is filled
    assert meta.get("XMP-photoshop:CaptionWriter") is None  # the description stays the person's
    if policy == "replace-machine":
        assert _as_list(meta["XMP-dc:Subject"]) == ["paris", "tower", "sunset"]
        assert _as_list(meta["IPTC:Keywords"]) == ["paris", "tower", "sunset"]
        assert _as_list(meta["XMP-lr:HierarchicalSubject"]) == ["tower", "sunset"]  # Lightroom, digiKam, Immich
    else:  # fill: a keyword list that has keywords is left as it is
        assert _as_list(meta["XMP-dc:Subject"]) == ["paris"]


async def test_a_person_s_caption_survives_a_sidecar_run_and_is_not_shadowed(tmp_path: Path) -> None:
    photo = _human_photo(tmp_path / "eiffel.jpg")
    digest = _digest(photo)
    await XmpSink().deliver(_enrichment(FIRST), _ref(photo))
    assert _digest(photo) == digest
    sidecar = _read(tmp_path / "eiffel.jpg.xmp")
    # the image's own caption is a person's, so the sidecar (which apps read first) carries none of descry's
    assert "XMP-dc:Description" not in sidecar
    assert _as_list(sidecar["XMP-dc:Subject"]) == ["tower", "dusk"]
    _assert_human_caption(_read(photo))


async def test_replace_machine_replaces_only_descry_s_own_text(tmp_path: Path) -> None:
    photo = _jpeg(tmp_path / "tower.jpg")
    _exiftool(photo, "-EXIF:ImageDescription=OLYMPUS DIGITAL CAMERA")  # a camera's placeholder is empty
    sink = XmpSink(mode="embed")
    await sink.deliver(_enrichment(FIRST), _ref(photo))
    meta = _read(photo)
    assert meta["XMP-dc:Description"] == meta["IPTC:Caption-Abstract"] == meta["IFD0:ImageDescription"] == FIRST
    assert meta["XMP-descry:MachineDescription"] == FIRST

    await sink.deliver(_enrichment(SECOND), _ref(photo))  # descry's own text is replaced everywhere
    meta = _read(photo)
    assert meta["XMP-dc:Description"] == meta["IPTC:Caption-Abstract"] == meta["IFD0:ImageDescription"] == SECOND

    _exiftool(photo, f"-XMP-dc:Description={HUMAN}")  # a person edits the caption
    before = _digest(photo)
    await sink.deliver(_enrichment(SECOND), _ref(photo))
    assert _digest(photo) == before  # nothing would change: the file is not touched
    await sink.deliver(_enrichment(FIRST), _ref(photo))
    meta = _read(photo)
    assert meta["XMP-dc:Description"] == HUMAN
    assert meta["IPTC:Caption-Abstract"] == SECOND  # one field in three places: none of them is replaced
    assert meta["XMP-iptcCore:AltTextAccessibility"] == FIRST  # the alt text is still descry's own

    await XmpSink(mode="embed", policy="overwrite").deliver(_enrichment(FIRST), _ref(photo))
    meta = _read(photo)
    assert meta["XMP-dc:Description"] == meta["IPTC:Caption-Abstract"] == FIRST


async def test_the_caption_language_is_added_and_other_languages_are_kept(tmp_path: Path) -> None:
    photo = _human_photo(tmp_path / "eiffel.jpg")
    await XmpSink(mode="embed").deliver(_enrichment("Ein Eisenturm in der Abenddämmerung.", language="de"), _ref(photo))
    meta = _read(photo)
    _assert_human_caption(meta)  # x-default is the person's, so no German one is put beside it
    assert "XMP-dc:Description-de" not in meta

    fresh = _jpeg(tmp_path / "fresh.jpg")
    _exiftool(fresh, "-XMP-dc:Description-fr=Tour Eiffel au crépuscule")
    await XmpSink(mode="embed", policy="overwrite").deliver(_enrichment("Ein Turm.", language="de"), _ref(fresh))
    meta = _read(fresh)
    assert meta["XMP-dc:Description"] == meta["XMP-dc:Description-de"] == "Ein Turm."
    assert meta["XMP-dc:Description-fr"] == "Tour Eiffel au crépuscule"


async def test_skip_leaves_a_captioned_image_alone(tmp_path: Path) -> None:
    photo = _human_photo(tmp_path / "eiffel.jpg")
    blank = _jpeg(tmp_path / "blank.jpg")
    sink = XmpSink(mode="embed", policy="skip")
    digest = _digest(photo)
    assert sink.blocks(_ref(photo)) and not sink.blocks(_ref(blank))
    await sink.deliver(_enrichment(FIRST), _ref(photo))
    assert _digest(photo) == digest
    await sink.deliver(_enrichment(FIRST), _ref(blank))
    assert _read(blank)["XMP-dc:Description"] == FIRST
    assert sink.blocks(_ref(blank))  # now it has one


async def test_a_raw_file_only_ever_gets_a_sidecar(tmp_path: Path) -> None:
    raw = tmp_path / "IMG_0001.dng"
    Image.new("RGB", (40, 30), (10, 20, 30)).save(raw, "TIFF")  # DNG is TIFF-based: sniffing alone would embed
    digest = _digest(raw)
    sink = XmpSink(mode="embed", sidecar_name="stem")
    await sink.deliver(_enrichment(FIRST), _ref(raw))
    assert _digest(raw) == digest
    assert _read(tmp_path / "IMG_0001.xmp")["XMP-dc:Description"] == FIRST  # Lightroom's name for a RAW's sidecar


def test_dry_run_plan_reports_each_field_and_writes_nothing(tmp_path: Path) -> None:
    photo = _human_photo(tmp_path / "eiffel.jpg")
    digest, mtime = _digest(photo), photo.stat().st_mtime_ns
    changes = XmpSink(mode="embed").plan(_enrichment(FIRST), _ref(photo))
    by_field = {c.field: c for c in changes}
    assert by_field["XMP dc:description[x-default]"].action == "keep"
    assert by_field["XMP dc:description[x-default]"].before == HUMAN
    assert by_field["IPTC Caption-Abstract"].action == "keep"
    assert by_field["XMP AltTextAccessibility[x-default]"].action == "write"
    assert by_field["XMP dc:subject"].after == "paris, tower, dusk"
    assert (_digest(photo), photo.stat().st_mtime_ns) == (digest, mtime)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eiffel.jpg"]
