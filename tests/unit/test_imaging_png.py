"""PNG integrity: damaged chunk data is refused as corrupt, every whole PNG still decodes."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from descry.config import ImageLimits
from descry.errors import CorruptImage
from descry.imaging import decode, decode_full
from tests.security.corpus import picture, png_flipped_idat, raw_png, valid_pngs

LIMITS = ImageLimits()


@pytest.mark.parametrize("decoder", [decode, decode_full])
def test_png_with_flipped_idat_bytes_is_corrupt(decoder: object) -> None:
    damaged = png_flipped_idat(picture("PNG", (128, 128)))
    with pytest.raises(CorruptImage) as info:
        decoder(damaged, "flipped.png", LIMITS)  # type: ignore[operator]
    assert info.value.code == "corrupt_image"


@pytest.mark.parametrize("decoder", [decode, decode_full])
@pytest.mark.parametrize(("label", "data"), valid_pngs(), ids=[label for label, _ in valid_pngs()])
def test_whole_pngs_of_every_shape_decode(label: str, data: bytes, decoder: object) -> None:
    with Image.open(io.BytesIO(data)) as original:
        size = original.size
    out = decoder(data, f"{label}.png", LIMITS, target_pixels=64 * 64)  # type: ignore[operator]
    assert out.format == "PNG"
    assert (out.width, out.height) == size
    assert out.image.mode == "RGB"


def test_interlaced_png_decodes_to_the_same_pixels_as_its_plain_twin() -> None:
    rows = [[bytes((x * 9 % 256, y * 17 % 256, (x * y) % 256)) for x in range(29)] for y in range(19)]
    plain = decode(raw_png(rows, 2, 8), "plain.png", LIMITS).image
    laced = decode(raw_png(rows, 2, 8, interlace=True), "laced.png", LIMITS).image
    assert laced.tobytes() == plain.tobytes()


def test_bad_crc_in_an_ancillary_chunk_is_tolerated() -> None:
    data = picture("PNG", (24, 24))
    text = b"tEXt" + b"Comment\x00hello"
    chunk = len(text[4:]).to_bytes(4, "big") + text + b"\x00\x00\x00\x00"  # a wrong CRC
    at = data.find(b"IEND") - 4  # after the image data: Pillow checks the chunks before IDAT itself
    damaged = data[:at] + chunk + data[at:]
    assert decode(damaged, "text.png", LIMITS).format == "PNG"


def test_truncated_png_chunk_is_corrupt() -> None:
    data = picture("PNG", (64, 64))
    with pytest.raises(CorruptImage):
        decode(data[: data.find(b"IDAT") + 40], "cut.png", LIMITS)
