import io

import pytest
from PIL import Image

from descry.config import ImageLimits
from descry.errors import CorruptImage, ImageTooLarge, UnsupportedFormat
from descry.imaging import decode, decode_full, draft_scale
from tests.conftest import image_bytes

LIMITS = ImageLimits()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_decodes_each_format_to_rgb(fmt: str) -> None:
    out = decode(image_bytes(fmt, (50, 30)), "x", LIMITS)
    assert out.image.mode == "RGB"
    assert (out.width, out.height, out.format) == (50, 30, fmt)
    assert len(out.sha256) == 64


def test_format_comes_from_bytes_not_extension() -> None:
    out = decode(image_bytes("PNG"), "looks_like.jpg", LIMITS)
    assert out.format == "PNG"


def test_exif_orientation_is_applied() -> None:
    img = Image.new("RGB", (80, 40), "red")
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif)
    out = decode(buf.getvalue(), "rot.jpg", LIMITS)
    assert out.image.size == (40, 80)
    assert (out.width, out.height) == (40, 80)


def test_alpha_is_flattened() -> None:
    out = decode(image_bytes("PNG", alpha=True), "a.png", LIMITS)
    assert out.image.mode == "RGB"


def test_draft_decode_keeps_enough_pixels_and_is_used_for_big_jpegs() -> None:
    data = image_bytes("JPEG", (2400, 1600))
    target = 300 * 200
    out = decode(data, "big.jpg", LIMITS, target_pixels=target)
    full = decode_full(data, "big.jpg", LIMITS, target_pixels=target)
    assert out.image.width * out.image.height <= target * 1.01
    assert out.image.size == full.image.size
    assert (out.width, out.height) == (2400, 1600)
    assert draft_scale((2400, 1600), target) is not None
    assert draft_scale((100, 100), target) is None


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", CorruptImage),
        (b"hello, I am text\n", UnsupportedFormat),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", UnsupportedFormat),
        (b"%PDF-1.4 ...", UnsupportedFormat),
        (bytes(range(256)) * 4, UnsupportedFormat),
    ],
)
def test_bad_inputs_name_the_input(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        decode(data, "the-input.jpg", LIMITS)
    assert "the-input.jpg" in str(info.value)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_truncated_images_are_corrupt(fmt: str) -> None:
    data = image_bytes(fmt, (300, 300))
    with pytest.raises((CorruptImage, UnsupportedFormat)):
        decode(data[: len(data) // 3], "cut", LIMITS)


def test_animated_gif_is_refused() -> None:
    frames = [Image.new("RGB", (20, 20), c) for c in ("red", "blue")]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    with pytest.raises(UnsupportedFormat):
        decode(buf.getvalue(), "anim.gif", LIMITS)


def test_limits_on_bytes_pixels_and_formats() -> None:
    with pytest.raises(ImageTooLarge):
        decode(image_bytes("PNG"), "x", ImageLimits(max_bytes=10))
    with pytest.raises(ImageTooLarge):
        decode(image_bytes("PNG", (100, 100)), "x", ImageLimits(max_pixels=5000))
    with pytest.raises(ImageTooLarge):
        decode(image_bytes("PNG", (100, 10)), "x", ImageLimits(max_side=50))
    with pytest.raises(UnsupportedFormat):
        decode(image_bytes("BMP"), "x", ImageLimits(formats=["JPEG"]))
