"""Camera and phone formats beyond Pillow's own: HEIC/HEIF (pillow-heif) and camera RAW (rawpy, LibRaw).

Pillow decodes AVIF itself (its wheels bundle libavif). HEIC/HEIF needs pillow-heif (a base
dependency), whose opener is registered the first time a HEIF file is decoded, never at import.
Camera RAW needs rawpy (the ``raw`` extra): the caption is made from the embedded
JPEG preview when it is large enough, else from a fast half-size demosaic; either way upright.

What a file is comes from its bytes; its name only says whether its metadata belongs in a
``.xmp`` sidecar (``is_raw``), because a RAW file is never written to.
"""

from __future__ import annotations

import functools
import importlib
import io
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps, features

from descry.config import ImageLimits
from descry.errors import CorruptImage, ImageTooLarge, UnsupportedFormat

RAW_EXTENSIONS = frozenset(
    ".dng .cr2 .cr3 .crw .nef .nrw .arw .srf .sr2 .raf .orf .rw2 .pef .srw .3fr .iiq .erf .kdc .mos .mrw .x3f".split()
)
RAW_GLOBS = tuple(f"*{ext}" for ext in sorted(RAW_EXTENSIONS))
HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"})
AVIF_BRANDS = frozenset({b"avif", b"avis"})
# the commands the project's own install uses (as MissingDependency says them)
HEIF_INSTALL = "pip install -c constraints.txt pillow-heif"
RAW_INSTALL = 'pip install -c constraints.txt -e ".[raw]"'
AVIF_INSTALL = "pip install -U pillow"
# LibRaw's flip (0, 3, 5, 6) as the turn that makes the image upright
_FLIP = {3: Image.Transpose.ROTATE_180, 5: Image.Transpose.ROTATE_90, 6: Image.Transpose.ROTATE_270}
_TIFF_HEADERS = (b"II*\x00", b"MM\x00*")
_CFA, _LINEAR_RAW, _DNG_VERSION, _SUB_IFDS, _PHOTOMETRIC = 32803, 34892, 50706, 330, 262
_MAX_IFDS = 32


def is_raw(name: str | Path) -> bool:
    """Whether a file name is a camera RAW format's (its metadata then goes to a sidecar, never into it)."""
    return Path(str(name)).suffix.lower() in RAW_EXTENSIONS


def brand(data: bytes) -> bytes | None:
    """The ISO-BMFF major brand (``heic``, ``avif``, ``crx `` ...), or None for other files."""
    return data[8:12] if data[4:8] == b"ftyp" else None


def is_heif(data: bytes) -> bool:
    return brand(data) in HEIF_BRANDS


def missing_decoder(fmt: str, install: str, name: str) -> UnsupportedFormat:
    """The one-line error for a format whose decoder is not installed: names both."""
    return UnsupportedFormat(f"{fmt} files need a decoder that is not installed", source=name, hint=install)


@functools.cache
def heif_opener() -> bool:
    """Register pillow-heif's HEIC/HEIF opener with Pillow (once); False when it is not installed."""
    try:
        pillow_heif = importlib.import_module("pillow_heif")
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


def ensure_decoder(data: bytes, name: str) -> None:
    """Make sure Pillow can open a HEIF or AVIF file, or raise naming the format and its package."""
    kind = brand(data)
    if kind in HEIF_BRANDS and not heif_opener() and kind not in (b"mif1", b"msf1"):
        raise missing_decoder("HEIC/HEIF", HEIF_INSTALL, name)
    if kind in AVIF_BRANDS and not features.check("avif"):
        raise missing_decoder("AVIF", AVIF_INSTALL, name)


def raw_format(data: bytes, name: str = "") -> str | None:
    """The camera RAW format of the bytes (``DNG``, ``CR3``, ...), or None when they are no RAW."""
    head = data[:16]
    if head[:4] in (b"IIRO", b"IIRS", b"MMOR"):
        return "ORF"
    if head.startswith(b"FUJIFILMCCD-RAW"):
        return "RAF"
    if head[:4] == b"IIU\x00":
        return "RW2"
    if head[:4] == b"FOVb":
        return "X3F"
    if brand(data) == b"crx ":
        return "CR3"
    if head[:4] not in _TIFF_HEADERS or len(data) < 16:
        return None
    if head[8:10] == b"CR":
        return "CR2"
    found = _tiff_raw(data)
    if found == "RAW" and is_raw(name):
        return Path(name).suffix[1:].upper()
    return found


def _tiff_raw(data: bytes) -> str | None:
    """``DNG`` for a TIFF with DNGVersion, ``RAW`` for one holding CFA or linear raw data, else None."""
    order = "<" if data[:2] == b"II" else ">"
    queue: list[int] = [struct.unpack_from(order + "I", data, 4)[0]]
    seen: set[int] = set()
    while queue and len(seen) < _MAX_IFDS:
        at = queue.pop(0)
        if at in seen or at < 8 or at + 2 > len(data):
            continue
        seen.add(at)
        tags, following = _ifd(data, at, order)
        if _DNG_VERSION in tags:
            return "DNG"
        if tags.get(_PHOTOMETRIC, [0])[:1] in ([_CFA], [_LINEAR_RAW]):
            return "RAW"
        queue.extend(tags.get(_SUB_IFDS, []))
        if following:
            queue.append(following)
    return None


def _ifd(data: bytes, at: int, order: str) -> tuple[dict[int, list[int]], int]:
    """The SHORT/LONG tags of one IFD (values read only when short enough to matter) and the next IFD."""
    (count,) = struct.unpack_from(order + "H", data, at)
    tags: dict[int, list[int]] = {}
    end = at + 2 + 12 * count
    if end + 4 > len(data):
        return tags, 0
    for i in range(count):
        tag, kind, n, value = struct.unpack_from(order + "HHI4s", data, at + 2 + 12 * i)
        fmt = {3: "H", 4: "I", 13: "I"}.get(kind)
        if fmt is None or n > 64:
            tags[tag] = []
            continue
        size = struct.calcsize(fmt) * n
        start = struct.unpack(order + "I", value)[0]
        raw = value[:size] if size <= 4 else data[start : start + size]
        tags[tag] = list(struct.unpack(order + fmt * n, raw)) if len(raw) == size else []
    return tags, struct.unpack_from(order + "I", data, end)[0]


@dataclass(frozen=True)
class RawImage:
    """A RAW file made viewable: the picture to caption and the sensor image's upright size."""

    image: Image.Image
    width: int
    height: int
    source: str  # "preview" or "demosaic"


def _rawpy(fmt: str, name: str) -> Any:
    try:
        return importlib.import_module("rawpy")
    except ImportError:
        raise missing_decoder(f"camera RAW ({fmt})", RAW_INSTALL, name) from None


def decode_raw(data: bytes, name: str, fmt: str, limits: ImageLimits, target_pixels: int | None) -> RawImage:
    """The embedded preview when it has at least a quarter of the pixels wanted, else a half-size
    demosaic; turned upright by the camera's orientation."""
    rawpy = _rawpy(fmt, name)
    try:
        with rawpy.imread(io.BytesIO(data)) as raw:
            width, height, flip = raw.sizes.width, raw.sizes.height, raw.sizes.flip
            _check_size(width, height, name, limits)
            upright = (height, width) if flip in (5, 6) else (width, height)
            wanted = min(target_pixels or width * height, width * height) // 4
            preview = _preview(raw, rawpy, flip, wanted)
            if preview is not None:
                return RawImage(preview, *upright, source="preview")
            rgb = raw.postprocess(half_size=True, use_camera_wb=True, output_bps=8)
    except rawpy.LibRawFileUnsupportedError as exc:
        raise UnsupportedFormat(
            f"LibRaw cannot read this {fmt} file ({exc})", source=name, hint="a newer rawpy may know the camera"
        ) from exc
    except (rawpy.LibRawError, OSError, ValueError) as exc:
        raise CorruptImage(f"the {fmt} file is truncated or corrupt ({exc})", source=name) from exc
    return RawImage(Image.fromarray(rgb), *upright, source="demosaic")


def _check_size(width: int, height: int, name: str, limits: ImageLimits) -> None:
    if width <= 0 or height <= 0:
        raise CorruptImage(f"the RAW file claims a {width}x{height} image", source=name)
    if width > limits.max_side or height > limits.max_side or width * height > limits.max_pixels:
        raise ImageTooLarge(
            f"{width}x{height} pixels is too large",
            source=name,
            hint=f"the limit is {limits.max_pixels} pixels and {limits.max_side} per side (DESCRY_LIMITS__MAX_PIXELS)",
        )


def _preview(raw: Any, rawpy: Any, flip: int, wanted: int) -> Image.Image | None:
    """The embedded preview, upright, when it exists, decodes and has at least ``wanted`` pixels."""
    try:
        thumb = raw.extract_thumb()
    except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError):
        return None
    if thumb.format == rawpy.ThumbFormat.BITMAP:
        img = Image.fromarray(thumb.data)
    else:
        try:
            img = Image.open(io.BytesIO(thumb.data))
            img.load()
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
            return None
    if img.width * img.height < wanted:
        return None
    if img.getexif().get(0x0112, 1) != 1:
        return ImageOps.exif_transpose(img)
    return img.transpose(_FLIP[flip]) if flip in _FLIP else img
