"""Image-only processors: the still video processor carries the checkpoint's settings; a missing class is one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("transformers")

from descry.backends import hf_processors  # noqa: E402
from descry.errors import ConfigError  # noqa: E402


def test_the_still_video_processor_holds_the_checkpoints_video_settings(tmp_path: Path) -> None:
    config = {"num_frames": 64, "fps": 1, "video_processor_type": "SmolVLMVideoProcessor"}
    (tmp_path / "video_preprocessor_config.json").write_text(json.dumps(config))
    still = hf_processors.still_video_processor(str(tmp_path))
    assert (still.num_frames, still.fps) == (64, 1)
    assert hf_processors.still_video_processor(str(tmp_path / "elsewhere")).num_frames is None


def test_every_video_family_gets_its_stock_class_with_the_stock_init() -> None:
    for model_type, name in hf_processors.VIDEO_PROCESSORS.items():
        cls = hf_processors.image_only_processor_class(model_type)
        (stock,) = [base for base in cls.__mro__ if base.__name__ == name]
        assert cls.__init__ is stock.__init__, model_type
        assert issubclass(cls, hf_processors.ImageOnly)


def test_a_processor_class_transformers_lacks_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(hf_processors.VIDEO_PROCESSORS, "qwen9_vl", "Qwen9VLProcessor")
    with pytest.raises(ConfigError) as info:
        hf_processors.image_only_processor_class("qwen9_vl")
    assert "Qwen9VLProcessor" in str(info.value) and "upgrade transformers" in (info.value.hint or "")
