"""Shared fixtures: settings, image factories and a scripted test backend."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image

from descry.config import Settings


def image_bytes(
    fmt: str = "JPEG", size: tuple[int, int] = (64, 48), color: tuple[int, int, int] = (200, 30, 30), **save: object
) -> bytes:
    """A small real image in the given format."""
    img = Image.new("RGB", size, color)
    for x in range(0, size[0], 8):
        for y in range(0, size[1], 8):
            img.putpixel((x, y), (x % 256, y % 256, (x + y) % 256))
    if fmt == "PNG" and save.pop("alpha", False):
        img = img.convert("RGBA")
    buf = io.BytesIO()
    img.save(buf, fmt, **save)
    return buf.getvalue()


def varied_images(count: int, wide: tuple[int, int] = (160, 80)) -> list[Image.Image]:
    """Images of different sizes, aspect ratios and modes, for batching tests of the backends."""
    return [
        Image.new("RGB", (64, 48), (200, 30, 30)),
        Image.new("RGB", wide, (20, 40, 220)),
        Image.new("L", (30, 90), 128),
        Image.new("RGBA", (41, 41), (10, 200, 10, 255)),
        Image.new("RGB", (300, 200), (250, 250, 250)),
    ][:count]


@pytest.fixture(scope="session", autouse=True)
def user_data_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The per-user data directory (and so descry's default state) of every test and its subprocesses."""
    home = tmp_path_factory.mktemp("xdg-data")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_DATA_HOME", str(home))
        yield home


@pytest.fixture(autouse=True)
def fp32_cpu(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """In-process tests run ``--dtype auto`` as on a CPU without native bf16, so the fp32 references hold on
    any machine; tests/unit/test_cpu_features.py and tests/integration/test_dtype_auto.py cover bf16."""
    from descry import cpu_features

    monkeypatch.setattr(cpu_features, "CPUINFO", tmp_path_factory.getbasetemp() / "no-cpuinfo")


@pytest.fixture
def make_image() -> Callable[..., bytes]:
    return image_bytes


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings isolated from the developer's environment and .env."""
    monkeypatch.chdir(tmp_path)
    for name in ("MAX_TOKENS", "TEST_MODE", "VLM_MODEL_ID", "VLM_LOAD_8BIT", "USE_GPT_OSS"):
        monkeypatch.delenv(name, raising=False)
    return Settings(data_dir=tmp_path / "data")


def mixed_folder(root: Path, count: int = 20) -> dict[str, list[Path]]:
    """A folder of JPEG, PNG and WebP images plus one corrupt JPEG and one text file named .jpg."""
    root.mkdir(parents=True, exist_ok=True)
    good: list[Path] = []
    formats = [("JPEG", ".jpg"), ("PNG", ".png"), ("WEBP", ".webp")]
    for i in range(count - 2):
        fmt, ext = formats[i % 3]
        sub = root / "sub" if i % 5 == 4 else root
        sub.mkdir(exist_ok=True)
        path = sub / f"img{i:02d}{ext}"
        path.write_bytes(image_bytes(fmt, (40 + 7 * i, 30 + 5 * i), (i * 12 % 256, 80, 160)))
        good.append(path)
    corrupt = root / "corrupt.jpg"
    corrupt.write_bytes(image_bytes("JPEG", (200, 200))[:300])
    text = root / "notes.jpg"
    text.write_text("this is not an image, just some notes\n")
    return {"good": good, "bad": [corrupt, text]}
