"""The ``xmp`` sink: XMP/IPTC metadata embedded in the image or written to a ``.xmp`` sidecar.

The original is never edited in place: it is copied to a temporary file in the same directory,
the metadata is written there (exiv2 rewrites metadata segments only; pixel data is untouched),
and the copy atomically replaces the original. Everything else already in the file is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from PIL import Image

from descry.errors import OutputError, require
from descry.fileio import replacing
from descry.schemas import Enrichment, ImageRef, SourceKind
from descry.sinks.files import image_location
from descry.sinks.xmp_fields import DESCRY_NS, DESCRY_PREFIX, MetadataChanges, plan_changes

log = logging.getLogger("descry.sinks.xmp")

# exiv2's XMP toolkit is process-wide state and not thread-safe: every pyexiv2 call takes this lock.
_EXIV2_LOCK = threading.Lock()

EMBED_FORMATS = {"JPEG", "PNG", "TIFF", "WEBP"}
IIM_FORMATS = {"JPEG", "TIFF"}
EMPTY_PACKET = (
    '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
    '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
    ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
    " </rdf:RDF>\n"
    "</x:xmpmeta>\n"
    '<?xpacket end="w"?>\n'
)


def sniff_format(data: bytes | None = None, path: Path | None = None) -> str | None:
    """The image format by content (PIL's name), or None when it is not an image PIL knows."""
    try:
        with Image.open(io.BytesIO(data) if data is not None else path) as img:  # type: ignore[arg-type]
            return img.format
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


class XmpSink:
    """Writes caption, keywords, alt text and a machine-generated marker as XMP (and IPTC IIM)."""

    name = "xmp"

    def __init__(
        self,
        mode: Literal["embed", "sidecar"] = "sidecar",
        output_dir: Path | None = None,
        sidecar_name: Literal["stem", "full"] = "stem",
        roots: Sequence[Path] = (),
    ) -> None:
        self._pyexiv2 = require("pyexiv2", "xmp")
        with _EXIV2_LOCK:
            self._pyexiv2.registerNs(DESCRY_NS, DESCRY_PREFIX)
        self.mode = mode
        self.output_dir = output_dir
        self.sidecar_name = sidecar_name
        self.roots = list(roots)

    async def deliver(self, enrichment: Enrichment, ref: ImageRef) -> None:
        await asyncio.to_thread(self.write, enrichment, ref)

    async def close(self) -> None:
        return None

    def done(self, ref: ImageRef) -> bool:
        """descry's own marker (``descry:MachineGenerated``) is in the sidecar or, embedding, the image."""
        try:
            image = image_location(ref, self.output_dir, self.name, self.roots)
        except OutputError:
            return False
        candidates = [self.sidecar_path(image)]
        if self.mode == "embed":
            candidates.insert(0, image)
        return any(self._has_marker(path) for path in candidates if path.is_file())

    def _has_marker(self, path: Path) -> bool:
        with _EXIV2_LOCK:
            try:
                with self._pyexiv2.Image(str(path)) as img:
                    return f"Xmp.{DESCRY_PREFIX}.MachineGenerated" in img.read_xmp()
            except RuntimeError:
                return False

    def write(self, enrichment: Enrichment, ref: ImageRef) -> Path:
        """Write the metadata for ``ref``; returns the file written (the image or its sidecar)."""
        image = image_location(ref, self.output_dir, self.name, self.roots)
        if self.mode == "sidecar":
            return self._write_sidecar(self.sidecar_path(image), enrichment)
        source, data = self._source(ref)
        fmt = sniff_format(data, source)
        if fmt not in EMBED_FORMATS:
            log.info("%s: %s cannot hold embedded XMP; writing a .xmp sidecar", ref.name, fmt or "unknown")
            return self._write_sidecar(self.sidecar_path(image), enrichment)
        return self._write_embedded(image, source, data, fmt, enrichment)

    def sidecar_path(self, image: Path) -> Path:
        """``photo.xmp`` (Adobe's convention) or ``photo.jpg.xmp`` (darktable, digiKam)."""
        if self.sidecar_name == "full":
            return image.with_name(image.name + ".xmp")
        return image.with_suffix(".xmp")

    def _source(self, ref: ImageRef) -> tuple[Path | None, bytes | None]:
        if ref.kind == SourceKind.path and ref.uri:
            path = Path(os.path.realpath(ref.uri))
            if not path.is_file():
                raise OutputError(f"cannot embed metadata in {ref.uri}: the file does not exist any more")
            return path, None
        if ref.data is not None:
            return None, ref.data
        raise OutputError(
            f"cannot embed metadata for {ref.name!r}: its bytes are not available here",
            hint="use DESCRY_SINKS__XMP__MODE=sidecar for images that are not files on this machine",
        )

    def _write_embedded(
        self, image: Path, source: Path | None, data: bytes | None, fmt: str, enrichment: Enrichment
    ) -> Path:
        target = Path(os.path.realpath(image)) if source is not None and self.output_dir is None else image
        with replacing(target) as tmp:
            if source is not None:
                shutil.copy2(source, tmp)
                _copy_owner(source, tmp)
            else:
                tmp.write_bytes(data or b"")
            self._apply(tmp, enrichment, iim=fmt in IIM_FORMATS, sidecar=False)
        return target

    def _write_sidecar(self, target: Path, enrichment: Enrichment) -> Path:
        with replacing(target) as tmp:
            if target.exists():
                shutil.copy2(target, tmp)
            else:
                tmp.write_text(EMPTY_PACKET, encoding="utf-8")
            self._apply(tmp, enrichment, iim=False, sidecar=True)
        return target

    def _apply(self, path: Path, enrichment: Enrichment, *, iim: bool, sidecar: bool) -> None:
        with _EXIV2_LOCK:
            try:
                with self._pyexiv2.Image(str(path)) as img:
                    changes = plan_changes(
                        enrichment, img.read_xmp(), img.read_iptc() if iim else None, img.read_exif()
                    )
                    if sidecar:
                        # exiv2 mirrors a sidecar's XMP into virtual IPTC and back on write, which would
                        # resurrect the old keywords; the sidecar stores only XMP, so nothing is lost.
                        img.clear_iptc()
                    _modify(img, changes)
            except RuntimeError as exc:
                raise OutputError(
                    f"could not write XMP metadata: {exc}",
                    hint="the file may be damaged or a variant exiv2 cannot write; the original is unchanged",
                ) from exc


def _modify(img: Any, changes: MetadataChanges) -> None:
    if changes.exif:
        img.modify_exif(changes.exif)
    if changes.iptc:
        img.modify_iptc(changes.iptc)
    img.modify_xmp(changes.xmp)


def _copy_owner(source: Path, copy: Path) -> None:
    st = source.stat()
    with contextlib.suppress(PermissionError, AttributeError):
        os.chown(copy, st.st_uid, st.st_gid)
