"""Pure image functions: sniff, validate, decode (JPEG draft mode), orient, resize.

The file extension is never trusted: the format comes from the bytes. HEIC/HEIF and camera RAW
are decoded through ``descry.formats`` (pillow-heif, rawpy); AVIF by Pillow itself.
"""

from __future__ import annotations

import hashlib
import io
import struct
import warnings
import zlib
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from descry.config import ImageLimits
from descry.errors import CorruptImage, ImageTooLarge, UnsupportedFormat
from descry.formats import (
    AVIF_BRANDS,
    HEIF_BRANDS,
    RAW_EXTENSIONS,
    brand,
    decode_raw,
    ensure_decoder,
    is_raw,
    raw_format,
)

_TEXT_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"<svg", "an SVG drawing"),
    (b"<?xml", "an XML document (SVG?)"),
    (b"%PDF", "a PDF document"),
    (b"<!doctype html", "an HTML page"),
    (b"<html", "an HTML page"),
    (b"PK\x03\x04", "a ZIP archive"),
)

_ISOBMFF_IMAGES = HEIF_BRANDS | AVIF_BRANDS | {b"crx "}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class DecodedImage:
    """An RGB image ready for a model, with what was true of the original file."""

    image: Image.Image
    name: str
    width: int
    height: int
    format: str
    sha256: str
    nbytes: int


def sniff(data: bytes) -> str | None:
    """Name what the bytes are when they are clearly not a raster image, else None."""
    head = data[:512].lstrip().lower()
    for signature, what in _TEXT_SIGNATURES:
        if head.startswith(signature.lower()):
            return what
    if b"<svg" in head:
        return "an SVG drawing"
    if brand(data) in _ISOBMFF_IMAGES:
        return None
    sample = data[:1024]
    if sample and all(32 <= b < 127 or b in (9, 10, 13) for b in sample):
        return "a text file"
    return None


def _open(data: bytes, name: str, limits: ImageLimits) -> Image.Image:
    if not data:
        raise CorruptImage("the file is empty (0 bytes)", source=name, hint="check the upload or the path")
    if len(data) > limits.max_bytes:
        raise ImageTooLarge(
            f"the file is {len(data)} bytes; the limit is {limits.max_bytes}",
            source=name,
            hint="raise DESCRY_LIMITS__MAX_BYTES or send a smaller file",
        )
    what = sniff(data)
    if what:
        raise UnsupportedFormat(f"this is {what}, not an image", source=name, hint=_formats_hint(limits))
    ensure_decoder(data, name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(f"too many pixels ({exc})", source=name, hint=_pixels_hint(limits)) from exc
    except UnidentifiedImageError as exc:
        raise UnsupportedFormat("not a recognised image format", source=name, hint=_formats_hint(limits)) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise CorruptImage(f"the image header is corrupt ({exc})", source=name) from exc


def check_png_chunks(data: bytes, name: str) -> None:
    """Refuse a PNG whose critical chunks (IHDR, PLTE, IDAT, IEND) fail their CRC or run past the end.

    Pillow checks no CRC while it loads the pixels, and a damaged deflate stream often inflates to
    garbage without an error; one CRC pass over the bytes is cheap next to decoding them.
    """
    at, view = len(_PNG_SIGNATURE), memoryview(data)
    while at + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, at)
        end, label = at + 8 + length, kind.decode("latin-1")
        if end + 4 > len(data):
            raise CorruptImage(f"the PNG is truncated inside its {label} chunk", source=name)
        if kind[0] & 0x20 == 0:  # critical: a CRC error there is fatal (PNG spec, 13.2)
            (stored,) = struct.unpack_from(">I", data, end)
            if zlib.crc32(view[at + 4 : end]) & 0xFFFFFFFF != stored:
                raise CorruptImage(f"the PNG's {label} chunk fails its CRC check", source=name)
        if kind == b"IEND":
            return
        at = end + 4


def _formats_hint(limits: ImageLimits) -> str:
    return "accepted formats: " + ", ".join(limits.formats)


def _pixels_hint(limits: ImageLimits) -> str:
    return f"the limit is {limits.max_pixels} pixels and {limits.max_side} per side (DESCRY_LIMITS__MAX_PIXELS)"


def validate(img: Image.Image, name: str, limits: ImageLimits) -> str:
    """Check format, animation and size from the header alone; returns the format name."""
    fmt = (img.format or "").upper()
    if fmt == "MPO":
        fmt = "JPEG"
    if fmt == "HEIC":
        fmt = "HEIF"
    if not accepted(fmt, limits):
        raise UnsupportedFormat(f"format {fmt or 'unknown'} is not accepted", source=name, hint=_formats_hint(limits))
    # a HEIF holding several images (bursts, edits) is no animation: its primary image is the photo
    if fmt != "HEIF" and getattr(img, "is_animated", False) and getattr(img, "n_frames", 1) > 1:
        raise UnsupportedFormat(
            f"animated {fmt} with {getattr(img, 'n_frames', 2)} frames",
            source=name,
            hint="send a still image, or extract one frame first",
        )
    width, height = img.size
    if width <= 0 or height <= 0:
        raise CorruptImage(f"the header claims a {width}x{height} image", source=name)
    if width > limits.max_side or height > limits.max_side or width * height > limits.max_pixels:
        raise ImageTooLarge(f"{width}x{height} pixels is too large", source=name, hint=_pixels_hint(limits))
    return fmt


def accepted(fmt: str, limits: ImageLimits) -> bool:
    """Whether the limits accept a format; HEIF there accepts AVIF too (settings written before AVIF had a name)."""
    allowed = {f.upper() for f in limits.formats}
    return fmt in allowed or (fmt == "AVIF" and "HEIF" in allowed)


def draft_scale(size: tuple[int, int], target_pixels: int | None) -> tuple[int, int] | None:
    """The smallest size a JPEG draft decode may produce while keeping at least target_pixels."""
    if not target_pixels:
        return None
    width, height = size
    if width * height <= target_pixels * 4:
        return None
    factor = (target_pixels / (width * height)) ** 0.5
    return max(1, int(width * factor)), max(1, int(height * factor))


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB with transparency flattened onto white."""
    if img.mode == "RGB":
        return img
    if img.mode in {"RGBA", "LA", "PA"} or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB")


def fit(img: Image.Image, max_pixels: int | None) -> Image.Image:
    """Downscale (never upscale) to at most max_pixels, keeping the aspect ratio."""
    if not max_pixels or img.width * img.height <= max_pixels:
        return img
    factor = (max_pixels / (img.width * img.height)) ** 0.5
    size = (max(1, round(img.width * factor)), max(1, round(img.height * factor)))
    return img.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0)


def decode(data: bytes, name: str, limits: ImageLimits, target_pixels: int | None = None) -> DecodedImage:
    """Validate and decode image bytes into an upright RGB image of at most ~target_pixels."""
    raw = raw_format(data, name) if len(data) <= limits.max_bytes else None
    if raw:
        return _decode_raw(data, name, raw, limits, target_pixels)
    img = _open(data, name, limits)
    fmt = validate(img, name, limits)
    if fmt == "PNG":
        check_png_chunks(data, name)
    width, height = upright_size(img)
    draft = draft_scale(img.size, target_pixels)
    if draft and fmt == "JPEG":
        img.draft("RGB", draft)
    try:
        img.load()
        img = ImageOps.exif_transpose(img)
        img = fit(to_rgb(img), target_pixels)
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(str(exc), source=name, hint=_pixels_hint(limits)) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise CorruptImage(f"the image data is truncated or corrupt ({exc})", source=name) from exc
    return DecodedImage(
        image=img,
        name=name,
        width=width,
        height=height,
        format=fmt,
        sha256=hashlib.sha256(data).hexdigest(),
        nbytes=len(data),
    )


def _decode_raw(data: bytes, name: str, fmt: str, limits: ImageLimits, target_pixels: int | None) -> DecodedImage:
    """A camera RAW file: its preview or a fast demosaic (``descry.formats.decode_raw``), made RGB and fitted."""
    if not accepted("RAW", limits) and not accepted(fmt, limits):
        raise UnsupportedFormat(f"format {fmt} (camera RAW) is not accepted", source=name, hint=_formats_hint(limits))
    made = decode_raw(data, name, fmt, limits, target_pixels)
    img = fit(to_rgb(made.image), target_pixels)
    return DecodedImage(img, name, made.width, made.height, fmt, hashlib.sha256(data).hexdigest(), len(data))


def upright_size(img: Image.Image) -> tuple[int, int]:
    """The original size as a viewer shows it, after EXIF orientation."""
    width, height = img.size
    try:
        orientation = img.getexif().get(0x0112, 1)
    except Exception:  # a broken EXIF block is not worth failing the image for
        orientation = 1
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def decode_full(data: bytes, name: str, limits: ImageLimits, target_pixels: int | None = None) -> DecodedImage:
    """The baseline path: full decode, then resize (what the draft path is measured against)."""
    img = _open(data, name, limits)
    fmt = validate(img, name, limits)
    if fmt == "PNG":
        check_png_chunks(data, name)
    width, height = upright_size(img)
    img.load()
    img = fit(to_rgb(ImageOps.exif_transpose(img)), target_pixels)
    return DecodedImage(img, name, width, height, fmt, hashlib.sha256(data).hexdigest(), len(data))


__all__ = [
    "RAW_EXTENSIONS",
    "DecodedImage",
    "accepted",
    "check_png_chunks",
    "decode",
    "decode_full",
    "draft_scale",
    "fit",
    "is_raw",
    "sniff",
    "to_rgb",
    "upright_size",
    "validate",
]
