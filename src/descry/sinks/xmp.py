"""The ``xmp`` sink: XMP/IPTC metadata in a ``.xmp`` sidecar (the default) or embedded in the image.

Sidecars are named ``photo.jpg.xmp`` (darktable, digiKam, Immich) or, with ``sidecar_name="stem"``,
``photo.xmp`` (Lightroom's name for proprietary RAW; images of one run sharing a stem get full names,
a RAW keeping the short one). Camera RAW files only ever get a sidecar. Embedding (``mode="embed"``,
JPEG, PNG, TIFF, WebP) never edits the original in place: it is copied to a temporary file in the
same directory, the metadata is written there (exiv2 rewrites metadata segments only; pixel data is
untouched), and the copy atomically replaces the original; everything else in the file is kept.

What is written follows the metadata policy (``descry.sinks.policy``): by default a person's
caption is never replaced, in the image or its sidecar. When nothing would change, no file is touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from descry.errors import EmptyCaption, OutputError
from descry.fileio import replacing
from descry.imaging import is_raw
from descry.schemas import Enrichment, FieldChange, ImageRef, MetadataPolicy, SourceKind, usable_caption
from descry.sinks.files import full_name, image_location, renamed, short_name, sidecar_names
from descry.sinks.policy import any_caption
from descry.sinks.xmp_fields import MetadataChanges, plan_changes
from descry.sinks.xmp_io import EMPTY_PACKET, Exiv2, Metadata, sniff_format

log = logging.getLogger("descry.sinks.xmp")

EMBED_FORMATS = {"JPEG", "PNG", "TIFF", "WEBP"}
IIM_FORMATS = {"JPEG", "TIFF"}

__all__ = ["EMBED_FORMATS", "IIM_FORMATS", "XmpSink", "sniff_format"]


@dataclass
class _Target:
    """Where one image's metadata goes: ``file`` is the image itself (``embed``) or its sidecar."""

    file: Path
    embed: bool
    source: Path | None = None  # the original image on this machine, if it is one
    data: bytes | None = None  # the image's bytes, when it is not a file here
    iim: bool = False


class XmpSink:
    """Writes caption, keywords, alt text and a machine-generated marker as XMP (and IPTC IIM)."""

    name = "xmp"
    policies = True  # deliver() takes a request's metadata policy

    def __init__(
        self,
        mode: Literal["embed", "sidecar"] = "sidecar",
        output_dir: Path | None = None,
        sidecar_name: Literal["stem", "full"] = "full",
        roots: Sequence[Path] = (),
        policy: MetadataPolicy = "replace-machine",
    ) -> None:
        self.exiv2 = Exiv2()
        self.mode = mode
        self.output_dir = output_dir
        self.sidecar_name = sidecar_name
        self.roots = list(roots)
        self.policy: MetadataPolicy = policy
        self._names: dict[Path, Path] = {}

    # -- the Sink contract ----------------------------------------------------------------

    async def deliver(self, enrichment: Enrichment, ref: ImageRef, *, policy: MetadataPolicy | None = None) -> None:
        await asyncio.to_thread(self.write, enrichment, ref, policy)

    async def close(self) -> None:
        return None

    def done(self, ref: ImageRef) -> bool:
        """descry's own marker (``descry:MachineGenerated``) is in the sidecar or, embedding, the image."""
        try:
            image = image_location(ref, self.output_dir, self.name, self.roots)
        except OutputError:
            return False
        candidates = [self.sidecar_path(image)]
        if self.mode == "embed" and not is_raw(image):
            candidates.insert(0, image)
        return any(self.exiv2.has_marker(path) for path in candidates if path.is_file())

    # -- a run's names, the skip policy's pre-check, dry runs -----------------------------

    def prepare(self, refs: Iterable[ImageRef]) -> dict[Path, Path]:
        """Decide the sidecar names for a whole run (``stem`` naming: images sharing a stem get full
        names); returns the images whose sidecar is not the usual name."""
        if self.sidecar_name == "full":
            return {}
        images = []
        for ref in refs:
            with contextlib.suppress(OutputError):
                images.append(image_location(ref, self.output_dir, self.name, self.roots))
        self._names = sidecar_names(images, ".xmp", prefer=is_raw)
        return renamed(self._names, ".xmp")

    def blocks(self, ref: ImageRef, policy: MetadataPolicy | None = None) -> bool:
        """Under ``skip``: the image already has a caption (in itself or its sidecar), so it is left alone."""
        if (policy or self.policy) != "skip":
            return False
        try:
            target = self._target(ref)
        except OutputError:
            return False
        held = self._original(target).captions()
        if not target.embed and target.file.is_file():
            held += self.exiv2.read(target.file, iim=False).captions()
        return any_caption(held) is not None

    def plan(self, enrichment: Enrichment, ref: ImageRef, policy: MetadataPolicy | None = None) -> list[FieldChange]:
        """What ``write`` would change, field by field, without writing anything."""
        target = self._target(ref)
        changes = self._plan(enrichment, target, policy or self.policy)
        return [
            FieldChange(sink=self.name, file=str(target.file), field=label, before=before, after=after, action=action)  # type: ignore[arg-type]
            for label, before, after, action in changes.report
        ]

    # -- writing --------------------------------------------------------------------------

    def write(self, enrichment: Enrichment, ref: ImageRef, policy: MetadataPolicy | None = None) -> Path | None:
        """Write the metadata for ``ref``; the file written (the image or its sidecar), None when the
        policy leaves everything as it is. An unusable caption writes nothing (EmptyCaption)."""
        if not usable_caption(enrichment.caption):
            raise EmptyCaption("the caption is empty; nothing was written", source=ref.name)
        target = self._target(ref)
        changes = self._plan(enrichment, target, policy or self.policy)
        if not changes.changed:
            log.info("%s: the metadata policy leaves %s as it is", ref.name, target.file)
            return None
        with replacing(target.file) as tmp:
            if target.embed and target.source is not None:
                shutil.copy2(target.source, tmp)
                _copy_owner(target.source, tmp)
            elif target.embed:
                tmp.write_bytes(target.data or b"")
            elif target.file.exists():
                shutil.copy2(target.file, tmp)
            else:
                tmp.write_text(EMPTY_PACKET, encoding="utf-8")
            self.exiv2.write(tmp, changes, sidecar=not target.embed)
        return target.file

    def sidecar_path(self, image: Path) -> Path:
        """``photo.jpg.xmp`` (full) or ``photo.xmp`` (stem), unless the run gave this image another name."""
        if image in self._names:
            return self._names[image]
        return full_name(image, ".xmp") if self.sidecar_name == "full" else short_name(image, ".xmp")

    def _plan(self, enrichment: Enrichment, target: _Target, policy: MetadataPolicy) -> MetadataChanges:
        original = self._original(target)
        if target.embed:
            iptc = original.iptc if target.iim else None
            return plan_changes(enrichment, original.xmp, iptc, original.exif, policy=policy)
        sidecar = self.exiv2.read(target.file, iim=False) if target.file.is_file() else Metadata()
        return plan_changes(enrichment, sidecar.xmp, None, None, policy=policy, fallback=original.fallback())

    def _original(self, target: _Target) -> Metadata:
        """The image's own metadata (none when it is not readable here)."""
        if target.source is not None:
            return self.exiv2.read(target.source)
        if target.data is not None:
            return self.exiv2.read(target.data)
        return Metadata()

    def _target(self, ref: ImageRef) -> _Target:
        image = image_location(ref, self.output_dir, self.name, self.roots)
        source, data = _source(ref)
        sidecar = _Target(self.sidecar_path(image), embed=False, source=source, data=data)
        if self.mode == "sidecar" or is_raw(image) or is_raw(ref.name):
            return sidecar
        if source is None and data is None:
            raise OutputError(
                f"cannot embed metadata for {ref.name!r}: its bytes are not available here",
                hint="use DESCRY_SINKS__XMP__MODE=sidecar for images that are not files on this machine",
            )
        fmt = sniff_format(data, source)
        if fmt not in EMBED_FORMATS:
            log.info("%s: %s cannot hold embedded XMP; writing a .xmp sidecar", ref.name, fmt or "unknown")
            return sidecar
        file = Path(os.path.realpath(image)) if source is not None and self.output_dir is None else image
        return _Target(file, embed=True, source=source, data=data, iim=fmt in IIM_FORMATS)


def _source(ref: ImageRef) -> tuple[Path | None, bytes | None]:
    """The original image: a file on this machine, or the bytes an upload brought."""
    if ref.kind == SourceKind.path and ref.uri:
        path = Path(os.path.realpath(ref.uri))
        return (path if path.is_file() else None), None
    return None, ref.data


def _copy_owner(source: Path, copy: Path) -> None:
    st = source.stat()
    with contextlib.suppress(PermissionError, AttributeError):
        os.chown(copy, st.st_uid, st.st_gid)
