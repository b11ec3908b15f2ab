"""Metadata policies and run-wide sidecar names: pure decisions, no files."""

from __future__ import annotations

from pathlib import Path

import pytest

from descry import schemas
from descry.imaging import is_raw
from descry.sinks.files import renamed, sidecar_names
from descry.sinks.policy import is_blank, may_write
from descry.sinks.xmp_fields import MACHINE_DESCRIPTION, X_DEFAULT, plan_changes


@pytest.mark.parametrize(
    ("current", "machine", "policy", "expected"),
    [
        (None, None, "fill", True),
        ("  ", None, "fill", True),
        ("OLYMPUS DIGITAL CAMERA", None, "fill", True),
        ("a person's words", None, "fill", False),
        ("a person's words", None, "replace-machine", False),
        ("descry's words", "descry's  words", "replace-machine", True),
        ("descry's words", "descry's words", "fill", False),
        ("a person's words", "descry's words", "replace-machine", False),
        ("a person's words", None, "overwrite", True),
        ({X_DEFAULT: "descry's words"}, "descry's words", "replace-machine", True),
    ],
)
def test_may_write(current: object, machine: str | None, policy: schemas.MetadataPolicy, expected: bool) -> None:
    assert may_write(current, machine, policy) is expected


def test_blank_values() -> None:
    assert is_blank(None) and is_blank("") and is_blank({}) and is_blank([]) and is_blank("SONY DSC")
    assert not is_blank("Sony at the beach") and not is_blank({X_DEFAULT: "x"})


def _enrichment(caption: str = "A dog on a beach.", language: str | None = None) -> schemas.Enrichment:
    tags = [schemas.Tag(name="dog", source="keyword")]
    return schemas.Enrichment(name="x", caption=caption, source="m", tags=tags, language=language)


def test_skip_writes_nothing_when_any_caption_is_there() -> None:
    changes = plan_changes(_enrichment(), {}, {"Iptc.Application2.Caption": "Shot by Ann"}, {}, policy="skip")
    assert not changes.changed and changes.xmp == {} and changes.iptc == {}
    fresh = plan_changes(_enrichment(), {}, {}, {}, policy="skip")
    assert fresh.xmp["Xmp.dc.description"] == {X_DEFAULT: "A dog on a beach."}


def test_another_language_stands_for_a_missing_x_default() -> None:
    existing = {"Xmp.dc.description": {'lang="en-US"': "Ann's dog"}}
    xmp = plan_changes(_enrichment("Ein Hund.", language="de"), existing).xmp
    assert "Xmp.dc.description" not in xmp and "Xmp.photoshop.CaptionWriter" not in xmp
    assert MACHINE_DESCRIPTION not in xmp
    ours = {"Xmp.dc.description": {X_DEFAULT: "Ein Hund.", 'lang="de"': "Ein Hund."}, MACHINE_DESCRIPTION: "Ein Hund."}
    again = plan_changes(_enrichment("Zwei Hunde.", language="de"), ours).xmp
    assert again["Xmp.dc.description"] == {X_DEFAULT: "Zwei Hunde.", 'lang="de"': "Zwei Hunde."}


def test_a_sidecar_respects_the_image_s_own_caption() -> None:
    changes = plan_changes(_enrichment(), {}, None, None, fallback={"Xmp.dc.description": "Ann's words"})
    assert "Xmp.dc.description" not in changes.xmp
    assert changes.xmp["Xmp.dc.subject[1]"] == "dog"


def test_sidecar_names_are_distinct_and_prefer_the_raw() -> None:
    d = Path("/p")
    images = [d / "photo.jpg", d / "photo.png", d / "other.jpg", d / "IMG_1.CR2", d / "IMG_1.jpg"]
    names = sidecar_names(images, ".xmp", prefer=is_raw)
    assert len(set(names.values())) == len(images)
    assert names[d / "other.jpg"] == d / "other.xmp"
    assert names[d / "IMG_1.CR2"] == d / "IMG_1.xmp"  # Lightroom finds its RAW's sidecar
    assert names[d / "IMG_1.jpg"] == d / "IMG_1.jpg.xmp"
    full = (d / "photo.jpg", d / "photo.png", d / "IMG_1.jpg")
    assert renamed(names, ".xmp") == {p: d / f"{p.name}.xmp" for p in full}
    # a full name that is another image's short name: both get full names, and the loop ends
    tricky = sidecar_names([d / "a.jpg", d / "a.jpg.png", d / "a.png"], ".txt")
    assert len(set(tricky.values())) == 3
    assert sidecar_names(list(reversed(images)), ".xmp", prefer=is_raw) == names  # the order does not matter
