"""A real, minimal DNG writer for tests: an RGGB Bayer mosaic that LibRaw (rawpy) demosaics,
optionally with an embedded JPEG preview, and an EXIF-style orientation.

The scene is a bright left half and a dark right half (as the camera saw it, before
orientation), so a test can tell which way an image was turned.
"""

from __future__ import annotations

import io
import struct

from PIL import Image

BYTE, ASCII, SHORT, LONG, RATIONAL, SRATIONAL = 1, 2, 3, 4, 5, 10
_FORMATS = {BYTE: "B", ASCII: "B", SHORT: "H", LONG: "I", RATIONAL: "I", SRATIONAL: "i"}
WHITE = 4095

Entry = tuple[int, int, list[int] | bytes]


def _pack(kind: int, values: list[int] | bytes) -> tuple[bytes, int]:
    """The little-endian bytes of a tag's values and its TIFF count."""
    if kind == ASCII:
        raw = bytes(values) + b"\x00"
        return raw, len(raw)
    items = list(values)
    raw = struct.pack(f"<{len(items)}{_FORMATS[kind]}", *items)
    count = len(items) // 2 if kind in (RATIONAL, SRATIONAL) else len(items)
    return raw, count


def _ifd(entries: list[Entry], at: int) -> bytes:
    """One IFD placed at offset ``at``, its long values right after its table; no next IFD."""
    entries = sorted(entries, key=lambda e: e[0])
    table_end = at + 2 + 12 * len(entries) + 4
    table, extra = [struct.pack("<H", len(entries))], b""
    for tag, kind, values in entries:
        raw, count = _pack(kind, values)
        if len(raw) <= 4:
            table.append(struct.pack("<HHI", tag, kind, count) + raw.ljust(4, b"\x00"))
        else:
            table.append(struct.pack("<HHII", tag, kind, count, table_end + len(extra)))
            extra += raw + (b"\x00" if len(raw) % 2 else b"")
    table.append(struct.pack("<I", 0))
    return b"".join(table) + extra


def mosaic(width: int, height: int) -> bytes:
    """16-bit RGGB samples of the scene: bright (warm) left half, dark right half."""
    rows = []
    for y in range(height):
        row = []
        for x in range(width):
            level = 0.8 if x < width // 2 else 0.1
            channel = (y % 2) * 2 + (x % 2)  # 0 R, 1 G, 2 G, 3 B
            gain = (1.0, 0.7, 0.7, 0.4)[channel]
            row.append(int(WHITE * level * gain))
        rows.append(struct.pack(f"<{width}H", *row))
    return b"".join(rows)


def _camera_tags(orientation: int) -> list[Entry]:
    identity = [v for i in range(9) for v in (int(i % 4 == 0), 1)]  # ColorMatrix1 = I, as n/d pairs
    return [
        (271, ASCII, b"Descry"),
        (272, ASCII, b"Test Camera"),
        (274, SHORT, [orientation]),
        (50706, BYTE, [1, 4, 0, 0]),
        (50707, BYTE, [1, 1, 0, 0]),
        (50708, ASCII, b"Descry Test Camera"),
        (50721, SRATIONAL, identity),
        (50728, RATIONAL, [1, 1, 1, 1, 1, 1]),
        (50778, SHORT, [21]),
    ]


def _raw_tags(width: int, height: int, offset: int, size: int) -> list[Entry]:
    return [
        (254, LONG, [0]),
        (256, LONG, [width]),
        (257, LONG, [height]),
        (258, SHORT, [16]),
        (259, SHORT, [1]),
        (262, SHORT, [32803]),
        (273, LONG, [offset]),
        (277, SHORT, [1]),
        (278, LONG, [height]),
        (279, LONG, [size]),
        (284, SHORT, [1]),
        (33421, SHORT, [2, 2]),
        (33422, BYTE, [0, 1, 1, 2]),
        (50714, LONG, [0]),
        (50717, LONG, [WHITE]),
    ]


def preview_jpeg(width: int, height: int) -> bytes:
    """A JPEG of the same scene (bright left half) at preview size."""
    img = Image.new("RGB", (width, height), (20, 20, 20))
    img.paste((230, 200, 160), (0, 0, width // 2, height))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def make_dng(
    width: int = 256, height: int = 192, *, orientation: int = 1, preview: tuple[int, int] | None = None
) -> bytes:
    """A DNG of ``width`` x ``height`` sensor pixels; with ``preview`` (w, h) IFD0 is a JPEG preview."""
    data = mosaic(width, height)
    jpeg = preview_jpeg(*preview) if preview else b""
    head = 8
    raw_at = head
    jpeg_at = raw_at + len(data)
    ifd_at = jpeg_at + len(jpeg) + (len(jpeg) % 2)
    body = bytearray(data + jpeg + b"\x00" * (len(jpeg) % 2))
    if not preview:
        ifd0 = _ifd(_raw_tags(width, height, raw_at, len(data)) + _camera_tags(orientation), ifd_at)
        return b"II*\x00" + struct.pack("<I", ifd_at) + bytes(body) + ifd0
    sub = _ifd(_raw_tags(width, height, raw_at, len(data)), ifd_at)
    ifd0_at = ifd_at + len(sub)
    pw, ph = preview
    preview_tags: list[Entry] = [
        (254, LONG, [1]),
        (256, LONG, [pw]),
        (257, LONG, [ph]),
        (258, SHORT, [8, 8, 8]),
        (259, SHORT, [7]),
        (262, SHORT, [6]),
        (273, LONG, [jpeg_at]),
        (277, SHORT, [3]),
        (278, LONG, [ph]),
        (279, LONG, [len(jpeg)]),
        (284, SHORT, [1]),
        (330, LONG, [ifd_at]),
    ]
    ifd0 = _ifd(preview_tags + _camera_tags(orientation), ifd0_at)
    return b"II*\x00" + struct.pack("<I", ifd0_at) + bytes(body) + sub + ifd0
