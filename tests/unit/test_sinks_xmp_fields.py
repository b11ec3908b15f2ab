"""Which XMP/IPTC fields the xmp sink writes: pure planning, no files."""

from __future__ import annotations

from datetime import UTC, datetime

from descry import __version__, schemas
from descry.sinks.xmp_fields import (
    IIM_CAPTION_BYTES,
    IIM_KEYWORD_BYTES,
    UTF8_ESCAPE,
    X_DEFAULT,
    alt_text,
    merge_keywords,
    plan_changes,
)

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def _enrichment(
    caption: str = "A dog on a beach.", tags: tuple[str, ...] = ("dog", "beach")
) -> schemas.Enrichment:
    tag_list = [schemas.Tag(name=t, source="keyword") for t in tags]
    return schemas.Enrichment(name="x", caption=caption, source="blip-base", tags=tag_list)


def _bag(xmp: dict[str, object], key: str) -> list[object]:
    assert xmp[key] == "type=Bag"
    return [xmp[f"{key}[{i}]"] for i in range(1, 100) if f"{key}[{i}]" in xmp]


def test_fresh_file_gets_every_field() -> None:
    changes = plan_changes(_enrichment(), {}, {}, {}, now=NOW)
    xmp = changes.xmp
    assert xmp["Xmp.dc.description"] == {X_DEFAULT: "A dog on a beach."}
    assert xmp["Xmp.iptc.AltTextAccessibility"] == {X_DEFAULT: "A dog on a beach."}
    assert _bag(xmp, "Xmp.dc.subject") == ["dog", "beach"]
    assert _bag(xmp, "Xmp.descry.MachineKeywords") == ["dog", "beach"]
    assert xmp["Xmp.photoshop.CaptionWriter"] == f"descry {__version__} (blip-base)"
    assert xmp["Xmp.descry.MachineGenerated"] == "True"
    assert xmp["Xmp.xmp.MetadataDate"] == "2024-05-01T12:00:00+00:00"
    assert xmp["Xmp.xmpMM.History"] == "type=Seq"
    assert xmp["Xmp.xmpMM.History[1]/stEvt:action"] == "edited"
    assert xmp["Xmp.xmpMM.History[1]/stEvt:changed"] == "/metadata"
    assert changes.iptc["Iptc.Envelope.CharacterSet"] == UTF8_ESCAPE
    assert changes.iptc["Iptc.Application2.Keywords"] == ["dog", "beach"]
    assert changes.exif == {}


def test_no_iim_when_the_format_has_none() -> None:
    assert plan_changes(_enrichment(), {}, None, None).iptc == {}


def test_existing_fields_are_merged_not_clobbered() -> None:
    existing = {
        "Xmp.dc.description": {X_DEFAULT: "old", 'lang="de-DE"': "Ein Hund"},
        "Xmp.dc.subject": ["holiday", "dog", "sand"],
        "Xmp.descry.MachineKeywords": ["sand"],
        "Xmp.xmpMM.History": 'type="Seq"',
        "Xmp.xmpMM.History[1]/stEvt:action": "saved",
        "Xmp.xmpMM.History[2]/stEvt:action": "edited",
    }
    changes = plan_changes(
        _enrichment(),
        existing,
        {"Iptc.Application2.Keywords": ["holiday"]},
        {"Exif.Image.ImageDescription": "old"},
        now=NOW,
        policy="overwrite",
    )
    xmp = changes.xmp
    assert xmp["Xmp.dc.description"] == {X_DEFAULT: "A dog on a beach.", 'lang="de-DE"': "Ein Hund"}
    assert _bag(xmp, "Xmp.dc.subject") == ["holiday", "dog", "beach"]
    assert _bag(xmp, "Xmp.descry.MachineKeywords") == ["beach"]
    assert "Xmp.xmpMM.History" not in xmp and xmp["Xmp.xmpMM.History[3]"] == "type=Struct"
    assert changes.iptc["Iptc.Application2.Keywords"] == ["holiday", "dog", "beach"]
    assert changes.exif == {"Exif.Image.ImageDescription": "A dog on a beach."}


def test_merge_keywords_keeps_human_ones() -> None:
    assert merge_keywords(["a", "m1"], ["m1"], ["m2", "a", "m2"]) == (["a", "m2"], ["m2"])
    assert merge_keywords([], [], []) == ([], [])


def test_no_keywords_removes_the_arrays() -> None:
    existing = {"Xmp.descry.MachineKeywords": ["x"], "Xmp.dc.subject": ["x"]}
    xmp = plan_changes(_enrichment(tags=()), existing).xmp
    assert xmp["Xmp.dc.subject"] is None and xmp["Xmp.descry.MachineKeywords"] is None


def test_iim_limits_are_respected_on_character_boundaries() -> None:
    caption = "é" * 3000
    changes = plan_changes(_enrichment(caption, tags=("ü" * 100,)), {}, {}, None)
    assert len(changes.iptc["Iptc.Application2.Caption"].encode()) <= IIM_CAPTION_BYTES
    (keyword,) = changes.iptc["Iptc.Application2.Keywords"]
    assert len(keyword.encode()) <= IIM_KEYWORD_BYTES and set(keyword) == {"ü"}
    assert len(changes.iptc["Iptc.Application2.Writer"].encode()) <= 32


def test_alt_text_is_short() -> None:
    assert alt_text("Short.") == "Short."
    first = "A dog runs along the wide sandy beach while the tide rolls in and gulls circle above the water."
    long = first + " It chases a ball near the waves and the sand is wet" * 10
    assert alt_text(long) == first
    words = alt_text("word " * 200)
    assert len(words) <= 250 and words.endswith("…")
