"""The ``sidecar`` sink: ``photo.jpg`` -> ``photo.txt`` (the caption) or ``photo.json`` (everything).

Metadata policies (``descry.sinks.policy``) apply to sidecars too. A ``.json`` sidecar descry wrote
is an enrichment document (``name``, ``caption``, ``source``), so descry can tell its own; a
``.txt`` sidecar holds only text, so one that is already there (and not blank) counts as a
person's: ``fill`` and ``replace-machine`` leave it as it is, ``overwrite`` replaces it, and
``skip`` leaves any image that has one alone. Names that would collide within one run are made
distinct before anything is written (``prepare``; rule in ``descry.sinks.files``); where no run
planned the names (the API, jobs), a ``.json`` descry wrote for another image of the same stem
sends this image's sidecar to its full name (``photo.png.json``) instead of replacing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

from pydantic import ValidationError

from descry.errors import EmptyCaption, OutputError
from descry.fileio import atomic_write
from descry.schemas import Enrichment, FieldChange, ImageRef, MetadataPolicy, usable_caption
from descry.sinks.files import (
    SidecarFormat,
    full_name,
    image_location,
    renamed,
    render_sidecar,
    short_name,
    sidecar_names,
)
from descry.sinks.policy import is_blank

log = logging.getLogger("descry.sinks.sidecar")


class SidecarSink:
    """Writes one sidecar file per image, atomically, beside the image or into ``output_dir``.

    ``roots``: folders whose tree the output directory mirrors (see ``descry.sinks.files``).
    """

    name = "sidecar"
    policies = True  # deliver() takes a request's metadata policy

    def __init__(
        self,
        fmt: SidecarFormat = "txt",
        output_dir: Path | None = None,
        roots: Sequence[Path] = (),
        policy: MetadataPolicy = "replace-machine",
    ) -> None:
        self.format: SidecarFormat = fmt
        self.output_dir = output_dir
        self.roots = list(roots)
        self.policy: MetadataPolicy = policy
        self._names: dict[Path, Path] = {}

    @property
    def suffix(self) -> str:
        return f".{self.format}"

    def target(self, ref: ImageRef) -> Path:
        """Where the sidecar for ``ref`` goes."""
        image = image_location(ref, self.output_dir, self.name, self.roots)
        planned = self._names.get(image)
        if planned is not None:
            return planned
        short = short_name(image, self.suffix)
        return full_name(image, self.suffix) if self._another_image_s(short, image) else short

    def _another_image_s(self, path: Path, image: Path) -> bool:
        """``path`` is a JSON sidecar descry wrote for another image of the same stem (photo.png's photo.json)."""
        if self.format != "json" or not path.is_file():
            return False
        try:
            document = _descry_document(path.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            return False
        return document is not None and Path(document.name.replace("\\", "/")).name != image.name

    def prepare(self, refs: Iterable[ImageRef]) -> dict[Path, Path]:
        """Decide every sidecar name of a run at once; returns the images that get their full name."""
        images = []
        for ref in refs:
            with contextlib.suppress(OutputError):
                images.append(image_location(ref, self.output_dir, self.name, self.roots))
        self._names = sidecar_names(images, self.suffix)
        return renamed(self._names, self.suffix)

    def existing(self, path: Path) -> tuple[str | None, bool]:
        """The caption a sidecar already holds (None: none) and whether descry wrote it."""
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None, False
        if self.format == "txt":
            return (None if is_blank(text) else text.strip()), False
        document = _descry_document(text)
        if document is not None:
            return document.caption, True
        return (None if is_blank(text) else text.strip()), False

    def _kept(self, path: Path, policy: MetadataPolicy) -> bool:
        """Whether ``policy`` leaves the sidecar at ``path`` as it is."""
        if policy == "overwrite":
            return False
        before, ours = self.existing(path)
        if before is None:
            return False
        return policy in ("fill", "skip") or not ours

    def blocks(self, ref: ImageRef, policy: MetadataPolicy | None = None) -> bool:
        """The image's sidecar is there and the policy keeps it, so captioning the image writes nothing."""
        try:
            return self._kept(self.target(ref), policy or self.policy)
        except OutputError:
            return False

    def plan(self, enrichment: Enrichment, ref: ImageRef, policy: MetadataPolicy | None = None) -> list[FieldChange]:
        """What ``write`` would do, without writing."""
        path = self.target(ref)
        before, _ = self.existing(path)
        kept = self._kept(path, policy or self.policy)
        after = before if kept else enrichment.caption.strip()
        action = "keep" if kept else "same" if before == after else "write"
        field = f"{self.format} sidecar"
        return [FieldChange(sink=self.name, file=str(path), field=field, before=before, after=after, action=action)]

    def write(self, enrichment: Enrichment, ref: ImageRef, policy: MetadataPolicy | None = None) -> Path | None:
        """Write the sidecar now (blocking); None when the policy keeps the one there."""
        if not usable_caption(enrichment.caption):
            raise EmptyCaption("the caption is empty; nothing was written", source=ref.name)
        path = self.target(ref)
        if self._kept(path, policy or self.policy):
            log.info("%s: %s is kept (written by a person, or the policy keeps it)", ref.name, path)
            return None
        atomic_write(path, render_sidecar(enrichment, self.format))
        return path

    async def deliver(self, enrichment: Enrichment, ref: ImageRef, *, policy: MetadataPolicy | None = None) -> None:
        await asyncio.to_thread(self.write, enrichment, ref, policy)

    def done(self, ref: ImageRef) -> bool:
        """The sidecar exists and is not blank (an image that has no place for one is never done)."""
        try:
            path = self.target(ref)
            size = path.stat().st_size
            return size >= 64 or (size > 0 and not is_blank(path.read_text(encoding="utf-8", errors="replace")))
        except Exception:
            return False

    async def close(self) -> None:
        return None


def _descry_document(text: str) -> Enrichment | None:
    """The enrichment a JSON sidecar descry wrote holds; None for any other text."""
    try:
        return Enrichment.model_validate(json.loads(text))
    except (ValueError, ValidationError):
        return None
