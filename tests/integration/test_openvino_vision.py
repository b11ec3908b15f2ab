"""The vision_runtime=openvino option: Florence-2's vision encoder on OpenVINO gives torch's captions (parity),
is converted once and read from the cache afterwards, and is refused for other models."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("openvino")
torch = pytest.importorskip("torch")

from descry.backends import registry  # noqa: E402
from descry.backends.base import Prompted  # noqa: E402
from descry.config import ModelSettings  # noqa: E402
from descry.errors import ConfigError  # noqa: E402
from descry.schemas import GenerationParams  # noqa: E402
from tests.conftest import varied_images  # noqa: E402
from tests.tiny.blip import build_tiny_blip  # noqa: E402
from tests.tiny.florence2 import build_tiny_florence2  # noqa: E402

pytestmark = pytest.mark.slow

PARAMS = GenerationParams(max_new_tokens=10, min_new_tokens=10, num_beams=3)


def captions(path: Path, **options: str) -> tuple[list[tuple[str, int]], object]:
    backend = registry.create_backend(ModelSettings(name=str(path), device="cpu", options=options))
    backend.load()
    try:
        items = [
            Prompted(image=image, params=PARAMS, task=task)
            for image in varied_images(3)
            for task in ("<CAPTION>", "<OCR>")
        ]
        gens = backend.generate(items)
        return [(g.text, g.output_tokens) for g in gens], backend.model.model.get_image_features  # type: ignore[attr-defined]
    finally:
        backend.close()


def test_openvino_vision_matches_torch_and_is_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = build_tiny_florence2(tmp_path / "florence")
    stock, _ = captions(path)
    converted, hook = captions(path, vision_runtime="openvino")
    assert getattr(hook, "__name__", "") == "get_image_features" and not hasattr(hook, "__self__")  # replaced
    assert converted == stock
    cached = list((tmp_path / "cache" / "descry" / "openvino").glob("florence2-vision-*.xml"))
    assert len(cached) == 1
    again, _ = captions(path, vision_runtime="openvino")  # read from the cache, not converted again
    assert again == stock
    assert list((tmp_path / "cache" / "descry" / "openvino").glob("florence2-vision-*.xml")) == cached


def test_openvino_vision_is_florence_only(tmp_path: Path) -> None:
    path = build_tiny_blip(tmp_path / "blip")
    backend = registry.create_backend(
        ModelSettings(name=str(path), device="cpu", options={"vision_runtime": "openvino"})
    )
    with pytest.raises(ConfigError, match="Florence-2"):
        backend.load()
    backend.close()
