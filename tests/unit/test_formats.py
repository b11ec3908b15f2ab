"""Phone and camera formats: HEIC/HEIF and AVIF decode, camera RAW from its preview or a demosaic,
formats found from the bytes, missing decoders named with their install command, folder discovery."""

from __future__ import annotations

import contextlib
import io
import random
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from descry import formats
from descry.config import ImageLimits
from descry.errors import CorruptImage, ImageTooLarge, MissingDependency, UnsupportedFormat
from descry.imaging import decode, is_raw
from descry.sources import walk_directory
from tests.fakes.dng import make_dng

LIMITS = ImageLimits()


def half_split(size: tuple[int, int] = (80, 40), exif_orientation: int | None = None) -> Image.Image:
    """Blue left half, red right half: a turn moves the blue half somewhere else."""
    img = Image.new("RGB", size, (220, 30, 30))
    img.paste((20, 20, 230), (0, 0, size[0] // 2, size[1]))
    if exif_orientation:
        img.getexif()[0x0112] = exif_orientation
    return img


def heic_bytes(img: Image.Image) -> bytes:
    """A HEIC as a phone writes it: the orientation is a rotation in the container (irot), as HEIF asks."""
    formats.heif_opener()  # also registers pillow-heif's encoder with Pillow
    buf = io.BytesIO()
    img.save(buf, "HEIF", quality=90, exif=img.getexif().tobytes())
    return buf.getvalue()


def avif_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "AVIF", quality=90, exif=img.getexif())
    return buf.getvalue()


def bright(img: Image.Image, xy: tuple[float, float]) -> int:
    return sum(img.getpixel((int(xy[0] * img.width), int(xy[1] * img.height))))


def is_blue(img: Image.Image, xy: tuple[float, float]) -> bool:
    r, _g, b = img.getpixel((int(xy[0] * img.width), int(xy[1] * img.height)))
    return b > 150 and r < 100


@pytest.mark.parametrize(("make", "fmt"), [(heic_bytes, "HEIF"), (avif_bytes, "AVIF")])
def test_heic_and_avif_decode_upright(make: object, fmt: str) -> None:
    plain = decode(make(half_split()), "IMG_0001.HEIC", LIMITS)  # type: ignore[operator]
    assert (plain.format, plain.width, plain.height, plain.image.mode) == (fmt, 80, 40, "RGB")
    assert is_blue(plain.image, (0.1, 0.5)) and not is_blue(plain.image, (0.9, 0.5))
    turned = decode(make(half_split(exif_orientation=6)), "x", LIMITS)  # type: ignore[operator]
    assert (turned.width, turned.height) == (40, 80)
    assert is_blue(turned.image, (0.5, 0.1)) and not is_blue(turned.image, (0.5, 0.9))


def test_a_heif_with_several_images_is_its_primary_image() -> None:
    formats.heif_opener()
    buf = io.BytesIO()
    first, second = half_split(), Image.new("RGB", (30, 20), (0, 200, 0))
    first.save(buf, "HEIF", save_all=True, append_images=[second], quality=90)
    out = decode(buf.getvalue(), "burst.heic", LIMITS)
    assert (out.format, out.width, out.height) == ("HEIF", 80, 40)


def test_heif_opener_is_registered_on_first_heif_decode_not_at_import(tmp_path: Path) -> None:
    probe = tmp_path / "a.heic"
    probe.write_bytes(heic_bytes(half_split()))
    code = (
        "from PIL import Image\n"
        "import descry, descry.imaging, descry.formats\n"
        "Image.init()\n"
        "assert 'HEIF' not in Image.OPEN, 'registered at import'\n"
        "from descry.config import ImageLimits\n"
        f"data = open({str(probe)!r}, 'rb').read()\n"
        "print(descry.imaging.decode(data, 'a.heic', ImageLimits()).format)\n"
        "assert descry.formats.heif_opener() is True\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["HEIF"]


def test_missing_heif_decoder_names_the_format_and_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(formats, "heif_opener", lambda: False)
    with pytest.raises(UnsupportedFormat) as info:
        formats.ensure_decoder(heic_bytes(half_split()), "IMG_0001.HEIC")
    assert info.value.code == "unsupported_format"
    assert info.value.hint == formats.HEIF_INSTALL
    assert "\n" not in str(info.value) and "HEIC" in info.value.message


@pytest.mark.parametrize(
    ("kwargs", "source"),
    [({}, "demosaic"), ({"preview": (200, 150)}, "preview"), ({"preview": (24, 18)}, "demosaic")],
)
@pytest.mark.parametrize("orientation", [1, 6, 8, 3])
def test_dng_is_captioned_from_preview_or_demosaic_and_upright(
    kwargs: dict[str, object], source: str, orientation: int
) -> None:
    data = make_dng(256, 192, orientation=orientation, **kwargs)  # type: ignore[arg-type]
    assert formats.raw_format(data, "no-extension") == "DNG"
    made = formats.decode_raw(data, "x.dng", "DNG", LIMITS, 100 * 100)
    assert made.source == source
    out = decode(data, "shot.dng", LIMITS, target_pixels=100 * 100)
    upright = (192, 256) if orientation in (6, 8) else (256, 192)
    assert (out.format, (out.width, out.height)) == ("DNG", upright)
    assert out.image.mode == "RGB" and out.image.width * out.image.height <= 100 * 100 * 1.01
    # the camera saw a bright left half: where it ends up says which way the image was turned
    spot = {1: (0.2, 0.5), 3: (0.8, 0.5), 6: (0.5, 0.2), 8: (0.5, 0.8)}[orientation]
    opposite = (1 - spot[0], 1 - spot[1])
    assert bright(out.image, spot) > bright(out.image, opposite) + 100


def test_raw_is_found_from_the_bytes_not_the_name() -> None:
    data = make_dng()
    assert decode(data, "renamed.jpg", LIMITS).format == "DNG"
    tiff = io.BytesIO()
    half_split().save(tiff, "TIFF")
    assert formats.raw_format(tiff.getvalue(), "fake.nef") is None
    assert decode(tiff.getvalue(), "fake.nef", LIMITS).format == "TIFF"
    assert formats.raw_format(b"FUJIFILMCCD-RAW 0201FF383501" + bytes(100)) == "RAF"
    assert formats.raw_format(b"IIRO\x08\x00\x00\x00" + bytes(100)) == "ORF"
    assert formats.raw_format(b"\x00\x00\x00\x18ftypcrx \x00\x00\x00\x01" + bytes(100)) == "CR3"
    assert formats.raw_format(b"II*\x00\x10\x00\x00\x00CR\x02\x00" + bytes(100)) == "CR2"


@pytest.mark.parametrize("seed", range(40))
def test_damaged_tiff_and_raw_headers_are_input_errors_never_crashes(seed: int) -> None:
    rng = random.Random(seed)
    data = bytearray(make_dng(64, 48, preview=(40, 30) if seed % 2 else None))
    cut = rng.randrange(0, len(data)) if seed % 3 == 0 else len(data)
    for _ in range(rng.randrange(1, 30)):  # the IFDs (tags, offsets, counts) sit at the end of the file
        data[rng.randrange(max(0, len(data) - 600), len(data))] = rng.randrange(256)
    for sample in (bytes(data[:cut]), b"II*\x00", b"MM\x00*\x00\x00\x00\x08" + bytes(data[8:24])):
        with contextlib.suppress(CorruptImage, UnsupportedFormat, ImageTooLarge):
            decode(sample, "x.dng", LIMITS)


def test_missing_raw_decoder_is_one_line_with_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rawpy", None)  # import rawpy now raises ImportError
    with pytest.raises(UnsupportedFormat) as info:
        decode(make_dng(), "DSC_0001.dng", LIMITS)
    assert (
        info.value.hint
        == formats.RAW_INSTALL
        == str(MissingDependency("rawpy", "raw").hint).removeprefix("install it with: ")
    )
    assert "DNG" in info.value.message and "\n" not in str(info.value)


def test_truncated_raw_is_corrupt_and_oversized_raw_is_refused() -> None:
    data = make_dng(preview=(200, 150))
    with pytest.raises((CorruptImage, UnsupportedFormat)):
        decode(data[: len(data) // 3], "cut.dng", LIMITS)
    with pytest.raises(ImageTooLarge):
        decode(data, "big.dng", ImageLimits(max_pixels=1000))
    with pytest.raises(UnsupportedFormat):
        decode(data, "x.dng", ImageLimits(formats=["JPEG"]))


def test_is_raw_by_name() -> None:
    assert is_raw("DSC_0001.NEF") and is_raw(Path("a/b.cr3")) and is_raw("x.dng")
    assert not is_raw("photo.jpg") and not is_raw("photo.heic") and not is_raw("nef")


def test_limits_name_avif_and_raw_and_old_heif_settings_still_accept_avif() -> None:
    assert {"HEIF", "AVIF", "RAW"} <= set(LIMITS.formats)
    old = ImageLimits(formats=["JPEG", "HEIF"])
    assert decode(avif_bytes(half_split()), "a.avif", old).format == "AVIF"


def test_folders_find_phone_and_camera_files_case_insensitively(tmp_path: Path) -> None:
    names = ["IMG_0001.HEIC", "b.heif", "c.AVIF", "DSC_0001.NEF", "e.dng", "f.CR3", "g.ARW", "h.raf", "i.ORF", "j.jpg"]
    for name in [*names, "notes.txt", "photo.jpg.xmp"]:
        (tmp_path / name).write_bytes(b"x")
    found = sorted(p.name for p in walk_directory(tmp_path))
    assert found == sorted(names)
