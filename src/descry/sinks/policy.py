"""Metadata policies: may descry write a field that already holds something? Pure decisions, no files.

``fill`` writes only empty fields; ``replace-machine`` (the default) also replaces a value descry
provably wrote itself (it equals the value descry recorded in its own XMP namespace, or the file is
a JSON sidecar descry wrote); ``overwrite`` writes every field descry writes; ``skip`` leaves an
image that already has a caption alone (the CLI does not even caption it) and fills the others.
A person's text is never replaced unless ``overwrite`` is asked for.

Camera firmware fills EXIF ImageDescription with placeholders ("OLYMPUS DIGITAL CAMERA"); those
count as empty.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, get_args

from descry.errors import InputError
from descry.schemas import MetadataPolicy

POLICIES: tuple[str, ...] = get_args(MetadataPolicy)
DEFAULT_POLICY: MetadataPolicy = "replace-machine"
CAMERA_PLACEHOLDERS = frozenset(
    {
        "OLYMPUS DIGITAL CAMERA",
        "SONY DSC",
        "DIGITAL CAMERA",
        "KONICA MINOLTA DIGITAL CAMERA",
        "MINOLTA DIGITAL CAMERA",
        "SAMSUNG DIGITAL CAMERA",
        "DCIM",
        "DEFAULT",
    }
)


def check_policy(value: str) -> MetadataPolicy:
    """``value`` as a policy; anything else is the caller's mistake (InputError: exit 2, 400)."""
    if value not in POLICIES:
        raise InputError(f"unknown metadata policy {value!r}", hint=f"choose from: {', '.join(POLICIES)}")
    return value  # type: ignore[return-value]


def text_of(value: Any) -> str | None:
    """A field's text: a language alternative's x-default (else its first), a list joined, else the string."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        if not value:
            return None
        return str(value.get('lang="x-default"', next(iter(value.values()))))
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) or None
    return str(value)


def is_blank(value: Any) -> bool:
    """Nothing a person wrote: missing, whitespace, or a camera's placeholder."""
    text = text_of(value)
    if text is None:
        return True
    stripped = text.strip().strip("\x00").strip()
    return not stripped or stripped.upper() in CAMERA_PLACEHOLDERS


def same_text(a: Any, b: Any) -> bool:
    """The same text, spaces aside (exiv2 and exiftool may trim)."""
    ta, tb = text_of(a), text_of(b)
    return ta is not None and tb is not None and " ".join(ta.split()) == " ".join(tb.split())


def may_write(current: Any, machine: Any, policy: MetadataPolicy) -> bool:
    """Whether descry may write a field that now holds ``current``; ``machine`` is what descry recorded
    writing there earlier (None: nothing recorded)."""
    if policy == "overwrite" or is_blank(current):
        return True
    return policy == "replace-machine" and same_text(current, machine)


def human_text(current: Any, machine: Any) -> str | None:
    """``current`` when a person wrote it (not blank, not descry's recorded value), else None."""
    if is_blank(current) or same_text(current, machine):
        return None
    return text_of(current)


def any_caption(values: list[Any]) -> str | None:
    """The first caption among ``values`` that is not blank (descry's own included), for ``skip``."""
    for value in values:
        if not is_blank(value):
            return text_of(value)
    return None
