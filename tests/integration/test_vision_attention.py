"""Fused vision attention: the same outputs as transformers' own attention, in far fewer calls."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from PIL import Image  # noqa: E402

from descry.backends import registry  # noqa: E402
from descry.backends.vision_attention import (  # noqa: E402
    FUSED,
    fuse_vision_attention,
    stock_attention,
    windowed_attention,
)  # noqa: E402
from descry.config import ModelSettings  # noqa: E402
from tests.tiny.blip import build_tiny_blip  # noqa: E402
from tests.tiny.hf_vlm import build_tiny_qwen2_5_vl  # noqa: E402

F = torch.nn.functional


def per_window(query: Any, key: Any, value: Any, bounds: list[int], scale: float) -> Any:
    """The reference: one attention call per window, as transformers' sdpa path does."""
    out = torch.zeros_like(query)
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        if end > start:
            q, k, v = (t[start:end].transpose(0, 1) for t in (query, key, value))
            out[start:end] = F.scaled_dot_product_attention(q, k, v, scale=scale).transpose(0, 1)
    return out


@pytest.mark.parametrize(
    "bounds",
    [
        [0, 16, 32, 48, 64],  # equal windows tiling the sequence
        [0, 16, 24, 40, 40, 52, 64],  # mixed lengths and an empty window
        [0, 64],  # one window
    ],
)
def test_windowed_attention_matches_one_call_per_window(bounds: list[int]) -> None:
    gen = torch.Generator().manual_seed(len(bounds))
    query, key, value = (torch.randn(64, 3, 8, generator=gen) for _ in range(3))
    cu = torch.tensor(bounds, dtype=torch.int32)
    expected = per_window(query, key, value, bounds, 0.3)
    torch.testing.assert_close(windowed_attention(query, key, value, cu, 0.3), expected)


@pytest.fixture
def sdpa_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[int, ...]]]:
    """Shapes of every scaled_dot_product_attention call (transformers' and descry's go through torch's)."""
    calls: list[tuple[int, ...]] = []
    real = F.scaled_dot_product_attention

    def counted(query: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(tuple(query.shape))
        return real(query, *args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", counted)
    yield calls


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_qwen2_5_vl(tmp_path_factory.mktemp("fused-qwen") / "qwen")


def qwen_pixels(path: Path, sizes: list[tuple[int, int]]) -> dict[str, Any]:
    from descry.backends.hf_vlm import image_only_processor_class

    processor = image_only_processor_class("qwen2_5_vl").from_pretrained(path)
    images = [Image.new("RGB", size, (40 * i, 90, 160)) for i, size in enumerate(sizes)]
    return dict(processor.image_processor(images=images, return_tensors="pt"))


@pytest.mark.parametrize("sizes", [[(112, 112)] * 3, [(112, 112), (112, 56), (84, 112), (56, 56)]])
def test_qwen_vision_tower_gives_the_same_features_in_fewer_calls(
    tiny_qwen: Path, sizes: list[tuple[int, int]], sdpa_calls: list[tuple[int, ...]]
) -> None:
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(tiny_qwen, attn_implementation="sdpa").eval()
    inputs = qwen_pixels(tiny_qwen, sizes)
    with torch.inference_mode():
        stock = model.model.visual(inputs["pixel_values"], grid_thw=inputs["image_grid_thw"]).pooler_output
        stock_calls = len(sdpa_calls)
        sdpa_calls.clear()
        assert fuse_vision_attention(model) == model.config.vision_config.depth
        fused = model.model.visual(inputs["pixel_values"], grid_thw=inputs["image_grid_thw"]).pooler_output
    torch.testing.assert_close(fused, stock)
    assert len(sdpa_calls) < stock_calls
    if len(set(sizes)) == 1:  # equal images: one call per layer
        assert len(sdpa_calls) == model.config.vision_config.depth


def test_blip_vision_model_gives_the_same_features(tmp_path: Path) -> None:
    from transformers import BlipForConditionalGeneration

    model = BlipForConditionalGeneration.from_pretrained(build_tiny_blip(tmp_path / "blip")).eval()
    side = model.config.vision_config.image_size
    pixels = torch.randn(3, 3, side, side, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        eager = model.vision_model(pixels).last_hidden_state
        assert fuse_vision_attention(model) == model.config.vision_config.num_hidden_layers
        fused = model.vision_model(pixels).last_hidden_state
    torch.testing.assert_close(fused, eager)
    with stock_attention(model) as count, torch.inference_mode():
        assert count == model.config.vision_config.num_hidden_layers
        assert fused_modules(model) == 0
        torch.testing.assert_close(model.vision_model(pixels).last_hidden_state, eager)
    assert fused_modules(model) == count


def fused_modules(model: Any) -> int:
    return sum(1 for m in model.modules() if "forward" in vars(m) and (type(m).__module__, type(m).__name__) in FUSED)


def test_loading_through_descry_fuses_unless_an_attention_is_chosen(tiny_qwen: Path) -> None:
    default = registry.create_backend(ModelSettings(name=str(tiny_qwen), backend="hf_vlm", device="cpu"))
    default.load()
    chosen = registry.create_backend(
        ModelSettings(name=str(tiny_qwen), backend="hf_vlm", device="cpu", attn_implementation="eager")
    )
    chosen.load()
    try:
        assert fused_modules(default.model) == default.model.config.vision_config.depth  # type: ignore[attr-defined]
        assert fused_modules(chosen.model) == 0  # type: ignore[attr-defined]
    finally:
        default.close()
        chosen.close()


def test_blocks_on_flash_attention_keep_it(tiny_qwen: Path) -> None:
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(tiny_qwen, attn_implementation="sdpa")
    model.config.vision_config._attn_implementation = "flash_attention_2"
    assert fuse_vision_attention(model) == 0
    assert fused_modules(model) == 0


def test_an_unexpected_call_falls_back_to_the_class_forward(tiny_qwen: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(tiny_qwen, attn_implementation="sdpa").eval()
    fuse_vision_attention(model)
    block = next(m for m in model.modules() if (type(m).__module__, type(m).__name__) in FUSED)
    seen: list[object] = []
    monkeypatch.setattr(type(block), "forward", lambda self, *args, **kwargs: seen.append(kwargs) or "class")
    cu = torch.tensor([0, 4], dtype=torch.int32)
    assert block(torch.zeros(4, block.dim), cu) == "class"  # no position embeddings: not the signature we know
    assert seen == [{"position_embeddings": None}]
