"""Which XMP and IPTC fields descry writes, computed from an enrichment and the metadata already there.

Pure functions on plain dicts in pyexiv2's key format (``Xmp.dc.subject``), so they are easy to test.

Written: dc:description and Iptc4xmpCore:AltTextAccessibility (x-default, plus the caption's
language when the enrichment states one; other languages kept), dc:subject (machine keywords merged
with the human ones, which are never removed), photoshop:CaptionWriter (IPTC "Description Writer")
naming descry and the model, xmp:MetadataDate, an xmpMM:History event (action "edited", changed
"/metadata"), and the descry namespace fields that mark the text as machine-generated and record
exactly what descry wrote (MachineDescription, MachineAltText, MachineKeywords). IPTC IIM:
Caption-Abstract, Keywords, Writer-Editor (UTF-8). EXIF ImageDescription when the file has one.
The IPTC Digital Source Type is deliberately not set: it describes how the *image* was made, and
a machine-written caption does not make a photograph synthetic.

Policies (``descry.sinks.policy``): the description is one field held three times (XMP
dc:description, IPTC Caption-Abstract, EXIF ImageDescription, as the Metadata Working Group's
guidelines treat them), so when a person's text is in any of them, descry writes none of them
(except under ``overwrite``); in a sidecar, the image's own caption counts too (``fallback``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from descry._version import __version__
from descry.schemas import Enrichment, MetadataPolicy
from descry.sinks.policy import any_caption, is_blank, may_write, same_text, text_of

DESCRY_NS = "http://ns.descry.dev/xmp/1.0/"
DESCRY_PREFIX = "descry"
X_DEFAULT = 'lang="x-default"'
UTF8_ESCAPE = "\x1b%G"
IIM_CAPTION_BYTES = 2000
IIM_KEYWORD_BYTES = 64
IIM_WRITER_BYTES = 32
ALT_TEXT_CHARS = 250
MACHINE_DESCRIPTION = f"Xmp.{DESCRY_PREFIX}.MachineDescription"
MACHINE_ALT_TEXT = f"Xmp.{DESCRY_PREFIX}.MachineAltText"
MACHINE_KEYWORDS = f"Xmp.{DESCRY_PREFIX}.MachineKeywords"
DESCRIPTION = "Xmp.dc.description"
ALT_TEXT = "Xmp.iptc.AltTextAccessibility"
IIM_CAPTION = "Iptc.Application2.Caption"
IIM_KEYWORDS = "Iptc.Application2.Keywords"
EXIF_DESCRIPTION = "Exif.Image.ImageDescription"
ANY_CAPTION = "caption"  # a fallback's key: any caption the image holds, descry's own included (for skip)
# keyword lists: dc:subject (everyone) and lr:hierarchicalSubject (Lightroom, digiKam, Immich read it)
# with, for each, where descry records the keywords it added itself
KEYWORD_FIELDS = {
    "Xmp.dc.subject": ("XMP dc:subject", MACHINE_KEYWORDS),
    "Xmp.lr.hierarchicalSubject": ("XMP lr:hierarchicalSubject", f"Xmp.{DESCRY_PREFIX}.MachineHierarchicalSubject"),
}
_HISTORY = re.compile(r"^Xmp\.xmpMM\.History\[(\d+)\]")


@dataclass
class MetadataChanges:
    """What to write: pyexiv2-style dicts per metadata family (value None deletes the key), and per
    field what it held, what it gets and the action (``write``, ``keep``, ``same``) for dry runs."""

    xmp: dict[str, Any] = field(default_factory=dict)
    iptc: dict[str, Any] = field(default_factory=dict)
    exif: dict[str, Any] = field(default_factory=dict)
    report: list[tuple[str, str | None, str | None, str]] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """Whether any field gets a new value (otherwise the file is left untouched)."""
        return any(action == "write" for *_, action in self.report)


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


def _lang_key(values: dict[str, Any], language: str | None) -> str | None:
    """The language alternative's key for ``language`` (an existing key's spelling wins), or None."""
    if not language or language.lower() == "x-default":
        return None
    wanted = f'lang="{language}"'
    return next((k for k in values if k.lower() == wanted.lower()), wanted)


def _alt_values(existing: Any) -> dict[str, Any]:
    return dict(existing) if isinstance(existing, dict) else {}


@dataclass
class _Planner:
    """One planning pass: the policy, the metadata there, and the changes collected."""

    policy: MetadataPolicy
    xmp: dict[str, Any]
    changes: MetadataChanges
    fallback: dict[str, Any]

    def note(self, label: str, before: Any, after: Any, write: bool) -> None:
        same = same_text(before, after) or (text_of(before) is None and text_of(after) is None)
        action = "keep" if not write else "same" if same else "write"
        self.changes.report.append((label, text_of(before), text_of(after if write else before), action))

    def group_writable(self, pairs: list[tuple[Any, Any]]) -> bool:
        """May descry write a field held in several places (value, descry's record for it) at once?"""
        if self.policy == "overwrite":
            return True
        if self.policy == "fill":
            return all(is_blank(value) for value, _ in pairs)
        return all(is_blank(value) or same_text(value, machine) for value, machine in pairs)

    def x_default(self, key: str, machine: Any) -> Any:
        """A language alternative's x-default; without one, a person's text in another language or, for
        a sidecar, in the image itself stands for it."""
        values = _alt_values(self.xmp.get(key))
        if X_DEFAULT in values:
            return values[X_DEFAULT]
        others = [v for v in values.values() if not is_blank(v) and not same_text(v, machine)]
        return others[0] if others else self.fallback.get(key)

    def language_alt(self, key: str, label: str, text: str, language: str | None, write_default: bool) -> bool:
        """Write ``text`` as x-default (when ``write_default``) and as ``language``'s own alternative;
        whether anything is written."""
        values = _alt_values(self.xmp.get(key))
        wrote = write_default
        if write_default:
            values[X_DEFAULT] = text
        lang = _lang_key(values, language)
        if lang is not None:
            machine = self.xmp.get(MACHINE_DESCRIPTION if key == DESCRIPTION else MACHINE_ALT_TEXT)
            # only beside descry's own x-default: an alternative next to a person's caption would show
            # instead of it in an app whose language it is
            ok = write_default and may_write(values.get(lang), machine, self.policy)
            self.note(f"XMP {label}[{lang[6:-1]}]", values.get(lang), text, ok)
            if ok:
                values[lang] = text
                wrote = True
        if wrote:
            self.changes.xmp[key] = values
        return wrote


def plan_changes(
    enrichment: Enrichment,
    existing_xmp: dict[str, Any],
    existing_iptc: dict[str, Any] | None = None,
    existing_exif: dict[str, Any] | None = None,
    *,
    now: datetime | None = None,
    policy: MetadataPolicy = "replace-machine",
    fallback: dict[str, Any] | None = None,
) -> MetadataChanges:
    """The fields to write for ``enrichment`` under ``policy``; ``existing_iptc`` None means the format has
    no IIM; ``fallback``: the image's own XMP caption fields (a person's) when writing a sidecar."""
    exif = existing_exif or {}
    changes = MetadataChanges()
    fallback = fallback or {}
    if policy == "skip":
        held = [_alt_values(existing_xmp.get(DESCRIPTION)), (existing_iptc or {}).get(IIM_CAPTION)]
        held += [exif.get(EXIF_DESCRIPTION), fallback.get(ANY_CAPTION, fallback.get(DESCRIPTION))]
        if (found := any_caption(held)) is not None:
            changes.report.append(("caption", found, found, "keep"))
            return changes
        policy = "fill"
    planner = _Planner(policy, existing_xmp, changes, fallback)
    when = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    agent = generator_label(enrichment.source)
    caption = enrichment.caption
    wrote_caption = _caption_fields(planner, enrichment, existing_iptc, exif, agent)
    wrote_alt = _alt_text_field(planner, enrichment)
    tags = [t.name for t in enrichment.tags if _keyword_ok(t.name)]
    _keyword_fields(planner, tags, existing_iptc)
    if not changes.changed:
        return MetadataChanges(report=changes.report)
    ns = f"Xmp.{DESCRY_PREFIX}"
    changes.xmp.update(
        {
            "Xmp.xmp.MetadataDate": when,
            f"{ns}.MachineGenerated": "True",
            f"{ns}.CaptionGenerator": f"descry {__version__}",
            f"{ns}.CaptionModel": enrichment.source,
            f"{ns}.CaptionGeneratedAt": when,
            f"{ns}.AssetId": enrichment.asset_id,
        }
    )
    if wrote_caption:
        changes.xmp[MACHINE_DESCRIPTION] = caption
    if wrote_alt:
        changes.xmp[MACHINE_ALT_TEXT] = alt_text(caption)
    if changes.iptc:
        changes.iptc["Iptc.Envelope.CharacterSet"] = UTF8_ESCAPE
    changes.xmp.update(_history_event(existing_xmp, agent, when))
    return changes


def _caption_fields(
    planner: _Planner, enrichment: Enrichment, iptc: dict[str, Any] | None, exif: dict[str, Any], agent: str
) -> bool:
    """dc:description, IPTC Caption-Abstract and EXIF ImageDescription, decided together."""
    caption = enrichment.caption
    machine = planner.xmp.get(MACHINE_DESCRIPTION)
    machine_iim = _clip_utf8(str(machine), IIM_CAPTION_BYTES) if machine is not None else None
    current = planner.x_default(DESCRIPTION, machine)
    pairs: list[tuple[Any, Any]] = [(current, machine)]
    if iptc is not None:
        pairs.append((iptc.get(IIM_CAPTION), machine_iim))
    if EXIF_DESCRIPTION in exif:
        pairs.append((exif.get(EXIF_DESCRIPTION), machine))
    write = planner.group_writable(pairs)
    planner.note("XMP dc:description[x-default]", current, caption, write)
    wrote = planner.language_alt(DESCRIPTION, "dc:description", caption, enrichment.language, write)
    if write:
        planner.changes.xmp["Xmp.photoshop.CaptionWriter"] = agent
    if iptc is not None:
        clipped = _clip_utf8(caption, IIM_CAPTION_BYTES)
        planner.note("IPTC Caption-Abstract", iptc.get(IIM_CAPTION), clipped, write)
        if write:
            planner.changes.iptc[IIM_CAPTION] = clipped
            planner.changes.iptc["Iptc.Application2.Writer"] = _clip_utf8(agent, IIM_WRITER_BYTES)
    if EXIF_DESCRIPTION in exif:
        planner.note("EXIF ImageDescription", exif.get(EXIF_DESCRIPTION), caption, write)
        if write:
            planner.changes.exif[EXIF_DESCRIPTION] = caption
    return wrote


def _alt_text_field(planner: _Planner, enrichment: Enrichment) -> bool:
    text = alt_text(enrichment.caption)
    machine = planner.xmp.get(MACHINE_ALT_TEXT)
    current = planner.x_default(ALT_TEXT, machine)
    write = planner.group_writable([(current, machine)])
    planner.note("XMP AltTextAccessibility[x-default]", current, text, write)
    return planner.language_alt(ALT_TEXT, "AltTextAccessibility", text, enrichment.language, write)


def _keyword_fields(planner: _Planner, tags: list[str], iptc: dict[str, Any] | None) -> None:
    """Keywords: a person's are never removed; ``fill`` adds none to a list that has some."""
    for key, (label, record) in KEYWORD_FIELDS.items():
        existing = _as_list(planner.xmp.get(key))
        keep = planner.policy == "fill" and bool(existing)
        if keep:
            planner.note(label, existing, existing, False)
            continue
        keywords, added = merge_keywords(existing, _as_list(planner.xmp.get(record)), tags)
        planner.note(label, existing, keywords, True)
        planner.changes.xmp.update(_bag(key, keywords))
        planner.changes.xmp.update(_bag(record, added))
    previous = _as_list(planner.xmp.get(MACHINE_KEYWORDS))
    if iptc is None:
        return
    old = _as_list(iptc.get(IIM_KEYWORDS))
    if planner.policy == "fill" and old:
        planner.note("IPTC Keywords", old, old, False)
        return
    clipped = [_clip_utf8(t, IIM_KEYWORD_BYTES) for t in tags]
    merged, _ = merge_keywords(old, [_clip_utf8(p, IIM_KEYWORD_BYTES) for p in previous], clipped)
    planner.note("IPTC Keywords", old, merged, True)
    if merged != old:
        planner.changes.iptc[IIM_KEYWORDS] = merged or None
