"""Hostile files for the upload routes: each with the status and error codes it must get.

Builders return bytes; nothing here touches the network or the disk.
"""

from __future__ import annotations

import functools
import io
import random
import struct
import zipfile
import zlib
from dataclasses import dataclass

from PIL import Image

CORRUPT = frozenset({"corrupt_image", "unsupported_format"})
TOO_LARGE = frozenset({"image_too_large"})


@dataclass(frozen=True)
class BadFile:
    """An upload and what the server must answer: one of ``statuses`` with one of ``codes``."""

    label: str
    filename: str
    data: bytes
    statuses: frozenset[int]
    codes: frozenset[str]


def picture(fmt: str, size: tuple[int, int] = (96, 64), *, noise: bool = True, **save: object) -> bytes:
    """A real image; noisy so that compressed data is long enough to cut meaningfully."""
    rng = random.Random(7)
    img = Image.new("RGB", size, (120, 60, 200))
    if noise:
        img.putdata([(rng.randrange(256), rng.randrange(256), rng.randrange(256)) for _ in range(size[0] * size[1])])
    buf = io.BytesIO()
    img.save(buf, fmt, **save)
    return buf.getvalue()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_header(width: int, height: int, *, idat: bytes | None = None) -> bytes:
    """A PNG whose IHDR claims ``width`` x ``height``; the data is a few bytes (a pixel bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = idat if idat is not None else zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


def png_zero_bomb(width: int, height: int) -> bytes:
    """A real compressed-zeros PNG stream: tiny on disk, huge when decoded."""
    row = b"\x00" + b"\x00" * (width * 3)
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return png_header(width, height, idat=data)


def png_flipped_idat(png: bytes, count: int = 40) -> bytes:
    """``png`` with ``count`` bytes inside its first IDAT chunk's data inverted (the CRC left as it was)."""
    data = bytearray(png)
    at = data.find(b"IDAT")
    (length,) = struct.unpack_from(">I", data, at - 4)
    assert length > count + 8, "the IDAT chunk is too short to damage"
    for i in random.Random(11).sample(range(at + 4 + 2, at + 4 + length), count):
        data[i] ^= 0xFF
    return bytes(data)


_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def raw_png(rows: list[list[bytes]], color_type: int, depth: int, *, interlace: bool = False) -> bytes:
    """A PNG written by hand (Pillow writes no Adam7 nor 16-bit RGB): ``rows[y][x]`` is one pixel's bytes."""
    height, width = len(rows), len(rows[0])
    passes = _ADAM7 if interlace else ((0, 0, 1, 1),)
    raw = b""
    for x0, y0, dx, dy in passes:
        if x0 >= width or y0 >= height:
            continue
        raw += b"".join(b"\x00" + b"".join(row[x0::dx]) for row in rows[y0::dy])
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, int(interlace))
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b"")


def _noise_rows(size: tuple[int, int], channels: int, depth: int) -> list[list[bytes]]:
    rng = random.Random(5)
    width = channels * depth // 8
    return [[rng.randbytes(width) for _ in range(size[0])] for _ in range(size[1])]


def _pillow_png(mode: str, size: tuple[int, int] = (37, 23), **save: object) -> bytes:
    img = Image.frombytes("RGB", size, random.Random(3).randbytes(size[0] * size[1] * 3))
    img = img.quantize(16) if mode == "P" else img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, "PNG", **save)
    return buf.getvalue()


@functools.cache
def valid_pngs() -> tuple[tuple[str, bytes], ...]:
    """Whole PNGs of every shape that must decode: the CRC check must pass them all."""
    rgb, rgba16 = _noise_rows((37, 23), 3, 8), _noise_rows((19, 13), 4, 16)
    return (
        ("RGB", _pillow_png("RGB")),
        ("RGBA", _pillow_png("RGBA")),
        ("grey with alpha", _pillow_png("LA")),
        ("palette", _pillow_png("P")),
        ("palette with transparency", _pillow_png("P", transparency=0)),
        ("1-bit", _pillow_png("1")),
        ("16-bit grey", _pillow_png("I;16")),
        ("optimized", _pillow_png("RGB", optimize=True)),
        ("16-bit RGB", raw_png(_noise_rows((21, 17), 3, 16), 2, 16)),
        ("interlaced RGB", raw_png(rgb, 2, 8, interlace=True)),
        ("interlaced 16-bit RGBA", raw_png(rgba16, 6, 16, interlace=True)),
        ("interlaced 1x1", raw_png([[b"\x10\x20\x30"]], 2, 8, interlace=True)),
    )


def jpeg_with_size(width: int, height: int) -> bytes:
    """A small real JPEG whose SOF marker is patched to claim another size."""
    data = bytearray(picture("JPEG", (16, 16)))
    at = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, at + 5, height, width)
    return bytes(data)


def jpeg_with_exif(blob: bytes) -> bytes:
    """A JPEG carrying an APP1 Exif segment with ``blob`` as its body (at most ~64 KiB)."""
    data = picture("JPEG", (32, 32))
    body = b"Exif\x00\x00" + blob
    segment = b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body
    return data[:2] + segment + data[2:]


def broken_exif() -> bytes:
    """A TIFF header whose first IFD claims 65535 entries and points past the end."""
    return b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 0xFFFF) + b"\x01\x02" * 8


def bmp_header(width: int, height: int) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54 + 16, 0, 0, 54) + info + b"\x00" * 16


def zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("payload.js", "alert(document.domain)")
    return buf.getvalue()


def gif_js_polyglot() -> bytes:
    """GIF89a whose logical screen size bytes open a JS comment: valid JS and a (broken) GIF."""
    return b"GIF89a/*\x00\x00\x00\x00\x00*/=1;alert(document.cookie);//" + b"\x00" * 32 + b";"


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (16, 16), (80 * i, 200 - 60 * i, 40)) for i in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    return buf.getvalue()


def _bad(label: str, filename: str, data: bytes, statuses: set[int], codes: frozenset[str] | set[str]) -> BadFile:
    return BadFile(label, filename, data, frozenset(statuses), frozenset(codes))


@functools.cache
def bad_uploads() -> tuple[BadFile, ...]:
    """Uploads that must be refused with a 4xx, a stable code and a message (built once)."""
    jpeg = picture("JPEG", (256, 256))
    png = picture("PNG", (128, 128))
    webp = picture("WEBP", (128, 128))
    bad_crc = bytearray(png)
    bad_crc[29] ^= 0xFF  # inside IHDR's CRC
    svg = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    corrupt = {400, 415}
    return (
        _bad("zero bytes", "empty.jpg", b"", {400}, {"corrupt_image", "invalid_input"}),
        _bad("truncated JPEG", "cut.jpg", jpeg[: len(jpeg) // 2], corrupt, CORRUPT),
        _bad("JPEG header only", "head.jpg", jpeg[:200], corrupt, CORRUPT),
        _bad("JPEG magic then noise", "noise.jpg", b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8, corrupt, CORRUPT),
        _bad("JPEG with garbage scan", "garbage.jpg", jpeg[:700] + b"\x00" * 4000, corrupt, CORRUPT),
        _bad("truncated PNG", "cut.png", png[: len(png) // 2], corrupt, CORRUPT),
        _bad("PNG with a bad CRC", "crc.png", bytes(bad_crc), corrupt, CORRUPT),
        _bad("PNG with 40 flipped IDAT bytes", "flipped.png", png_flipped_idat(png), {400}, {"corrupt_image"}),
        _bad("PNG signature only", "sig.png", png[:8], corrupt, CORRUPT),
        _bad("truncated WebP", "cut.webp", webp[: len(webp) // 2], corrupt, CORRUPT),
        _bad("WebP RIFF header only", "riff.webp", webp[:20], corrupt, CORRUPT),
        _bad("text named .jpg", "notes.jpg", b"not an image, just a note\n" * 20, {415}, {"unsupported_format"}),
        _bad("SVG with script", "drawing.jpg", svg, {415}, {"unsupported_format"}),
        _bad("HTML page", "page.png", b"<!DOCTYPE html><html><body>x</body></html>", {415}, {"unsupported_format"}),
        _bad("PDF", "doc.jpg", b"%PDF-1.7\n1 0 obj<<>>endobj\n%%EOF", {415}, {"unsupported_format"}),
        _bad("ZIP", "archive.jpg", zip_bytes(), {415}, {"unsupported_format"}),
        _bad("ZIP then JPEG", "zipfirst.jpg", zip_bytes() + jpeg, {415}, {"unsupported_format"}),
        _bad("ELF binary", "prog.jpg", b"\x7fELF\x02\x01\x01" + bytes(range(200)), {415}, {"unsupported_format"}),
        _bad("GIF+JS polyglot", "poly.gif", gif_js_polyglot(), {400, 413, 415}, CORRUPT | TOO_LARGE),
        _bad("animated GIF", "anim.gif", animated_gif(), {415}, {"unsupported_format"}),
        _bad("PNG claiming 100000x100000", "bomb.png", png_header(100_000, 100_000), {413}, TOO_LARGE),
        _bad("PNG claiming 20000x20000", "big.png", png_header(20_000, 20_000), {413}, TOO_LARGE),
        _bad("PNG claiming 40000x1", "wide.png", png_header(40_000, 1), {413}, TOO_LARGE),
        _bad("zero-filled PNG bomb 12000x12000", "zeros.png", png_zero_bomb(12_000, 12_000), {413}, TOO_LARGE),
        _bad("JPEG claiming 60000x60000", "huge.jpg", jpeg_with_size(60_000, 60_000), {413}, TOO_LARGE),
        _bad("JPEG claiming 0x0", "zero.jpg", jpeg_with_size(0, 0), {400, 415}, CORRUPT),
        _bad("BMP claiming 50000x50000", "huge.bmp", bmp_header(50_000, 50_000), {413}, TOO_LARGE),
    )


def odd_but_valid() -> list[tuple[str, str, bytes]]:
    """Real images with hostile extras: they must be captioned (200), never crash the server."""
    return [
        ("JPEG with a 60 KiB junk EXIF", "exif.jpg", jpeg_with_exif(b"\xab" * 60_000)),
        ("JPEG with a broken EXIF IFD", "ifd.jpg", jpeg_with_exif(broken_exif())),
        ("JPEG+ZIP polyglot (ZIP appended)", "poly.jpg", picture("JPEG", (48, 48)) + zip_bytes()),
        ("traversal filename", "../../../../tmp/descry-escape.jpg", picture("JPEG", (40, 30))),
        ("absolute filename", "/etc/cron.d/descry.png", picture("PNG", (40, 30))),
        ("NUL and newline in filename", "a\x00b\r\nX-Evil: 1.jpg", picture("JPEG", (40, 30))),
    ]
