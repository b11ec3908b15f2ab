"""``--dtype auto`` on a CPU with a tiny Florence-2: bf16 where the CPU runs it natively, fp32 elsewhere, the
override, what ``/health`` and the start line say, and beam search that no longer copies the cross-attention cache."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from descry import cpu_features  # noqa: E402
from descry.api.routes.health import health_of  # noqa: E402
from descry.backends import registry  # noqa: E402
from descry.backends.beam_cache import skip_cross_attention_reorder  # noqa: E402
from descry.backends.precision import start_line  # noqa: E402
from descry.config import ModelSettings, Settings  # noqa: E402
from descry.engine.pipeline import Engine  # noqa: E402
from tests.conftest import varied_images  # noqa: E402
from tests.tiny.florence2 import build_tiny_florence2  # noqa: E402

pytestmark = pytest.mark.slow

ZEN4 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_bf16\n"
SKYLAKE = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw avx512vl\n"


@pytest.fixture(scope="module")
def florence_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_florence2(tmp_path_factory.mktemp("tiny-florence2"))


def cpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, flags: str) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text(flags)
    monkeypatch.setattr(cpu_features, "CPUINFO", info)


@pytest.mark.parametrize(("flags", "dtype"), [(ZEN4, "bfloat16"), (SKYLAKE, "float32")])
def test_auto_follows_the_cpu(
    florence_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, flags: str, dtype: str
) -> None:
    cpu(monkeypatch, tmp_path, flags)
    settings = Settings(model=ModelSettings(name=str(florence_dir), device="cpu"), data_dir=tmp_path / "data")
    engine = Engine(settings)
    engine.backend.load()
    try:
        assert engine.backend.model.dtype == getattr(torch, dtype)  # type: ignore[attr-defined]
        assert health_of(engine, settings).dtype == dtype
    finally:
        engine.backend.close()
    line = start_line(settings)
    assert line is not None and f"cpu, {dtype} (auto: " in line


def test_an_explicit_dtype_wins(florence_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cpu(monkeypatch, tmp_path, ZEN4)
    settings = Settings(
        model=ModelSettings(name=str(florence_dir), device="cpu", dtype="float32"), data_dir=tmp_path / "data"
    )
    backend = registry.create_backend(settings.model)
    backend.load()
    try:
        assert backend.model.dtype == torch.float32  # type: ignore[attr-defined]
    finally:
        backend.close()
    assert start_line(settings) == f"model {florence_dir} on cpu, float32"


def test_beam_search_skips_the_cross_attention_copy_with_equal_output(florence_dir: Path) -> None:
    """Beams of one image share its encoder output, so reordering only the self-attention cache is exact."""
    from transformers import AutoProcessor, Florence2ForConditionalGeneration

    model = Florence2ForConditionalGeneration.from_pretrained(florence_dir).eval()
    processor = AutoProcessor.from_pretrained(florence_dir)
    with torch.no_grad():  # weights scaled up so the tiny model's beams differ by image
        for param in model.parameters():
            param.mul_(4.0)
    inputs = processor(text=["<CAPTION>"] * 3, images=varied_images(3), return_tensors="pt")
    kwargs = {"max_new_tokens": 12, "num_beams": 3, "do_sample": False}
    with torch.inference_mode():
        stock = model.generate(**inputs, **kwargs)
        assert skip_cross_attention_reorder(model)
        assert not skip_cross_attention_reorder(model)  # installed once
        calls = []
        original = torch.Tensor.index_select

        def counting(self: torch.Tensor, *args: object) -> torch.Tensor:
            calls.append(tuple(self.shape))
            return original(self, *args)  # type: ignore[arg-type]

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(torch.Tensor, "index_select", counting)
            fast = model.generate(**inputs, **kwargs)
    assert torch.equal(stock, fast)
    image_tokens = processor.num_image_tokens
    assert calls and all(shape[2] < image_tokens for shape in calls if len(shape) == 4)
