"""Reading and writing XMP, IPTC and EXIF with pyexiv2 (exiv2), for the ``xmp`` sink.

exiv2's XMP toolkit is process-wide state and not thread-safe: every pyexiv2 call takes one lock.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from descry.errors import OutputError, require
from descry.sinks.policy import any_caption, human_text
from descry.sinks.xmp_fields import (
    ALT_TEXT,
    ANY_CAPTION,
    DESCRIPTION,
    DESCRY_NS,
    DESCRY_PREFIX,
    EXIF_DESCRIPTION,
    IIM_CAPTION,
    MACHINE_ALT_TEXT,
    MACHINE_DESCRIPTION,
    MetadataChanges,
)

_EXIV2_LOCK = threading.Lock()

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


@dataclass
class Metadata:
    """What a file holds: XMP, IPTC IIM (None: not read) and EXIF, in pyexiv2's key format."""

    xmp: dict[str, Any] = field(default_factory=dict)
    iptc: dict[str, Any] | None = None
    exif: dict[str, Any] = field(default_factory=dict)

    def captions(self) -> list[Any]:
        """The description as XMP, IPTC and EXIF hold it."""
        return [self.xmp.get(DESCRIPTION), (self.iptc or {}).get(IIM_CAPTION), self.exif.get(EXIF_DESCRIPTION)]

    def fallback(self) -> dict[str, Any]:
        """For a sidecar: the image's own caption when a person wrote it, its alt text, and any caption."""
        machine = self.xmp.get(MACHINE_DESCRIPTION)
        human = next((text for value in self.captions() if (text := human_text(value, machine))), None)
        return {
            DESCRIPTION: human,
            ALT_TEXT: human_text(self.xmp.get(ALT_TEXT), self.xmp.get(MACHINE_ALT_TEXT)),
            ANY_CAPTION: any_caption(self.captions()),
        }


class Exiv2:
    """pyexiv2 behind one lock: read, write planned changes, find descry's marker."""

    def __init__(self) -> None:
        self.lib = require("pyexiv2", "xmp")
        with _EXIV2_LOCK:
            self.lib.registerNs(DESCRY_NS, DESCRY_PREFIX)
            # exiv2 prints its warnings to the C stderr (a piped run's stderr is one JSON line); failures
            # still raise, and are reported as descry errors
            self.lib.set_log_level(4)

    def _open(self, source: Path | bytes) -> Any:
        if isinstance(source, bytes):
            return self.lib.ImageData(source)
        return self.lib.Image(str(source))

    def read(self, source: Path | bytes, *, iim: bool = True) -> Metadata:
        """The metadata of an image (path or bytes) or a sidecar; an unreadable file holds none."""
        with _EXIV2_LOCK:
            try:
                with self._open(source) as img:
                    return Metadata(img.read_xmp(), img.read_iptc() if iim else None, img.read_exif())
            except (RuntimeError, OSError, ValueError):
                return Metadata()

    def has_marker(self, path: Path) -> bool:
        """descry's own marker (``descry:MachineGenerated``) is in the file."""
        return f"Xmp.{DESCRY_PREFIX}.MachineGenerated" in self.read(path, iim=False).xmp

    def write(self, path: Path, changes: MetadataChanges, *, sidecar: bool) -> None:
        """Write the planned changes into ``path`` (a temporary copy of the image or sidecar)."""
        with _EXIV2_LOCK:
            try:
                with self.lib.Image(str(path)) as img:
                    if sidecar:
                        # exiv2 mirrors a sidecar's XMP into virtual IPTC and back on write, which would
                        # resurrect the old keywords; the sidecar stores only XMP, so nothing is lost.
                        img.clear_iptc()
                    if changes.exif:
                        img.modify_exif(changes.exif)
                    if changes.iptc:
                        img.modify_iptc(changes.iptc)
                    img.modify_xmp(changes.xmp)
            except RuntimeError as exc:
                raise OutputError(
                    f"could not write XMP metadata: {exc}",
                    hint="the file may be damaged or a variant exiv2 cannot write; the original is unchanged",
                ) from exc
