"""Which XMP and IPTC fields descry writes, computed from an enrichment and the metadata already there.

Pure functions on plain dicts in pyexiv2's key format (``Xmp.dc.subject``), so they are easy to test.

Written: dc:description and Iptc4xmpCore:AltTextAccessibility (x-default; other languages kept),
dc:subject (machine keywords merged with the human ones, which are never removed),
photoshop:CaptionWriter (IPTC "Description Writer") naming descry and the model, xmp:MetadataDate,
an xmpMM:History event (action "edited", changed "/metadata"), and the descry namespace fields that
mark the text as machine-generated. IPTC IIM: Caption-Abstract, Keywords, Writer-Editor (UTF-8).
The IPTC Digital Source Type is deliberately not set: it describes how the *image* was made, and
a machine-written caption does not make a photograph synthetic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from descry._version import __version__
from descry.schemas import Enrichment

DESCRY_NS = "http://ns.descry.dev/xmp/1.0/"
DESCRY_PREFIX = "descry"
X_DEFAULT = 'lang="x-default"'
UTF8_ESCAPE = "\x1b%G"
IIM_CAPTION_BYTES = 2000
IIM_KEYWORD_BYTES = 64
IIM_WRITER_BYTES = 32
ALT_TEXT_CHARS = 250
_HISTORY = re.compile(r"^Xmp\.xmpMM\.History\[(\d+)\]")


@dataclass
class MetadataChanges:
    """What to write: pyexiv2-style dicts per metadata family (value None deletes the key)."""

    xmp: dict[str, Any] = field(default_factory=dict)
    iptc: dict[str, Any] = field(default_factory=dict)
    exif: dict[str, Any] = field(default_factory=dict)


def generator_label(model: str) -> str:
    """``descry <version> (<model>)``: who wrote the text."""
    return f"descry {__version__} ({model})"


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    return [str(v) for v in value]


def _clip_utf8(text: str, limit: int) -> str:
    """At most ``limit`` UTF-8 bytes, cut on a character boundary."""
    return text.encode("utf-8")[:limit].decode("utf-8", errors="ignore")


def alt_text(caption: str, limit: int = ALT_TEXT_CHARS) -> str:
    """A short alternative text: the caption, or its first sentences / words within ``limit`` characters."""
    text = " ".join(caption.split())
    if len(text) <= limit:
        return text
    cut = text[:limit]
    sentence_end = max(cut.rfind(". "), cut.rfind("! "), cut.rfind("? "))
    if sentence_end > limit // 3:
        return cut[: sentence_end + 1]
    return cut[: cut.rfind(" ")].rstrip(" ,;:") + "…" if " " in cut else cut[: limit - 1] + "…"


def _keyword_ok(word: str) -> bool:
    # exiv2 reads a leading "type=" as an array-type declaration
    return bool(word.strip()) and not word.lower().startswith("type=")


def merge_keywords(
    existing: list[str], previous_machine: list[str], new: list[str]
) -> tuple[list[str], list[str]]:
    """(all keywords, the ones descry added): human keywords stay, descry's old ones are replaced."""
    machine = set(previous_machine)
    human = [k for k in existing if k not in machine]
    kept = set(human)
    added = [k for k in dict.fromkeys(new) if k not in kept]
    return human + added, added


def _lang_alt(existing: Any, text: str) -> dict[str, str]:
    values = dict(existing) if isinstance(existing, dict) else {}
    values[X_DEFAULT] = text
    return values


def _bag(key: str, items: list[str]) -> dict[str, Any]:
    """An rdf:Bag (pyexiv2 writes lists as rdf:Seq, which dc:subject must not be)."""
    if not items:
        return {key: None}
    out: dict[str, Any] = {key: "type=Bag"}
    out.update({f"{key}[{i}]": item for i, item in enumerate(items, start=1)})
    return out


def _history_event(existing_xmp: dict[str, Any], agent: str, when: str) -> dict[str, Any]:
    indices = [int(m.group(1)) for k in existing_xmp if (m := _HISTORY.match(k))]
    n = max(indices, default=0) + 1
    out: dict[str, Any] = {} if "Xmp.xmpMM.History" in existing_xmp else {"Xmp.xmpMM.History": "type=Seq"}
    base = f"Xmp.xmpMM.History[{n}]"
    out[base] = "type=Struct"
    out.update(
        {
            f"{base}/stEvt:action": "edited",
            f"{base}/stEvt:changed": "/metadata",
            f"{base}/stEvt:softwareAgent": agent,
            f"{base}/stEvt:when": when,
        }
    )
    return out


def plan_changes(
    enrichment: Enrichment,
    existing_xmp: dict[str, Any],
    existing_iptc: dict[str, Any] | None = None,
    existing_exif: dict[str, Any] | None = None,
    *,
    now: datetime | None = None,
) -> MetadataChanges:
    """The fields to write for ``enrichment``; ``existing_iptc`` None means the format has no IIM."""
    when = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    agent = generator_label(enrichment.source)
    caption = enrichment.caption
    tags = [t.name for t in enrichment.tags if _keyword_ok(t.name)]
    previous = _as_list(existing_xmp.get(f"Xmp.{DESCRY_PREFIX}.MachineKeywords"))
    keywords, added = merge_keywords(_as_list(existing_xmp.get("Xmp.dc.subject")), previous, tags)
    ns = f"Xmp.{DESCRY_PREFIX}"
    xmp: dict[str, Any] = {
        "Xmp.dc.description": _lang_alt(existing_xmp.get("Xmp.dc.description"), caption),
        "Xmp.iptc.AltTextAccessibility": _lang_alt(
            existing_xmp.get("Xmp.iptc.AltTextAccessibility"), alt_text(caption)
        ),
        "Xmp.photoshop.CaptionWriter": agent,
        "Xmp.xmp.MetadataDate": when,
        f"{ns}.MachineGenerated": "True",
        f"{ns}.CaptionGenerator": f"descry {__version__}",
        f"{ns}.CaptionModel": enrichment.source,
        f"{ns}.CaptionGeneratedAt": when,
        f"{ns}.AssetId": enrichment.asset_id,
    }
    xmp.update(_bag("Xmp.dc.subject", keywords))
    xmp.update(_bag(f"{ns}.MachineKeywords", added))
    xmp.update(_history_event(existing_xmp, agent, when))
    changes = MetadataChanges(xmp=xmp)
    if existing_iptc is not None:
        changes.iptc = _iptc_changes(existing_iptc, previous, tags, caption, agent)
    if existing_exif and "Exif.Image.ImageDescription" in existing_exif:
        changes.exif = {"Exif.Image.ImageDescription": caption}
    return changes


def _iptc_changes(
    existing: dict[str, Any], previous: list[str], tags: list[str], caption: str, agent: str
) -> dict[str, Any]:
    clipped = [_clip_utf8(t, IIM_KEYWORD_BYTES) for t in tags]
    old = _as_list(existing.get("Iptc.Application2.Keywords"))
    keywords, _ = merge_keywords(old, [_clip_utf8(p, IIM_KEYWORD_BYTES) for p in previous], clipped)
    return {
        "Iptc.Envelope.CharacterSet": UTF8_ESCAPE,
        "Iptc.Application2.Caption": _clip_utf8(caption, IIM_CAPTION_BYTES),
        "Iptc.Application2.Keywords": keywords or None,
        "Iptc.Application2.Writer": _clip_utf8(agent, IIM_WRITER_BYTES),
    }
