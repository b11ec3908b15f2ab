"""The blip backend on a tiny random BLIP captioning model, loaded through the registry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from PIL import Image  # noqa: E402

from descry.backends import registry  # noqa: E402
from descry.backends.base import Prompted  # noqa: E402
from descry.backends.blip import BlipBackend  # noqa: E402
from descry.config import ModelSettings  # noqa: E402
from descry.errors import CapabilityError, ModelNotFound  # noqa: E402
from descry.schemas import GenerationParams  # noqa: E402
from tests.conftest import varied_images  # noqa: E402
from tests.tiny.blip import build_tiny_blip  # noqa: E402

pytestmark = pytest.mark.slow

MAX_NEW = 6
TIMING_KEYS = {"preprocess_s", "generate_s", "postprocess_s", "batch_size"}


@pytest.fixture(scope="module")
def blip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_blip(tmp_path_factory.mktemp("tiny-blip"))


@pytest.fixture(scope="module")
def blip(blip_dir: Path) -> Iterator[BlipBackend]:
    backend = registry.create_backend(ModelSettings(name=str(blip_dir), device="cpu", max_new_tokens=MAX_NEW))
    assert isinstance(backend, BlipBackend)
    backend.load()
    yield backend
    backend.close()


def images() -> list[Image.Image]:
    return varied_images(4)


def token_count(backend: BlipBackend, text: str) -> int:
    return len(backend.processor.tokenizer(text)["input_ids"])


def test_registry_maps_the_blip_model_type(blip_dir: Path, blip: BlipBackend) -> None:
    assert registry._guess_backend(str(blip_dir)) == "blip"
    caps = blip.capabilities
    assert (caps.instruct, caps.prompt, caps.tasks, caps.batching) == (False, True, frozenset(), True)
    assert blip.loaded and blip.device == "cpu"


def test_unconditional_batch_in_one_call(blip: BlipBackend) -> None:
    gens = blip.generate([Prompted(image=img) for img in images()])
    assert len(gens) == 4
    image_tokens = (32 // 8) ** 2 + 1
    for gen in gens:
        assert isinstance(gen.text, str)
        assert gen.prompt_tokens == image_tokens + 1  # the image embeddings and the [DEC] bos token
        assert 1 <= gen.output_tokens <= MAX_NEW
        assert gen.finish_reason in {"stop", "length"}
        if gen.finish_reason == "length":
            assert gen.output_tokens == MAX_NEW
        assert gen.timings.keys() >= TIMING_KEYS
        assert gen.timings["batch_size"] == 4
        assert gen.structured is None


def test_mixed_conditional_and_unconditional_keep_order(blip: BlipBackend) -> None:
    prompts = ["a photography of", None, "a picture of a red car", "two cats", None]
    imgs = images() + [Image.new("RGB", (20, 70), (90, 90, 90))]
    items = [Prompted(image=img, prompt=p) for img, p in zip(imgs, prompts, strict=True)]
    gens = blip.generate(items)
    assert len(gens) == len(items)
    singles = [blip.generate([item])[0] for item in items]
    for prompt, gen, single in zip(prompts, gens, singles, strict=True):
        prefix_tokens = token_count(blip, prompt) - 1 if prompt else 1
        assert gen.prompt_tokens == 17 + prefix_tokens
        assert (gen.text, gen.output_tokens, gen.finish_reason) == (single.text, single.output_tokens,
                                                                     single.finish_reason)
        if prompt:
            assert not gen.text.lower().startswith(prompt)


def test_prefix_is_stripped_when_echoed(blip: BlipBackend) -> None:
    tok = blip.processor.tokenizer
    prefix = tok("a photography of", add_special_tokens=False)["input_ids"]
    caption = tok("a dog on the beach", add_special_tokens=False)["input_ids"]
    assert blip._caption([tok.bos_token_id, *prefix], [*caption, tok.sep_token_id]) == "a dog on the beach"
    assert blip._caption([tok.bos_token_id], [*caption, tok.sep_token_id]) == "a dog on the beach"


def test_eos_gives_stop_and_counts_it(blip: BlipBackend) -> None:
    bias = blip.model.text_decoder.cls.predictions.bias
    saved = bias.detach().clone()
    try:
        with torch.no_grad():
            bias[blip.model.config.text_config.sep_token_id] = 1e4
        pairs = zip(images(), [None, "two cats"] * 2, strict=True)
        gens = blip.generate([Prompted(image=img, prompt=p) for img, p in pairs])
    finally:
        with torch.no_grad():
            bias.copy_(saved)
    assert [(g.finish_reason, g.output_tokens, g.text) for g in gens] == [("stop", 1, "")] * 4


def test_generation_params_apply_per_group(blip: BlipBackend) -> None:
    short = GenerationParams(max_new_tokens=2, min_new_tokens=2)
    items = [
        Prompted(image=img, params=short if i % 2 else GenerationParams()) for i, img in enumerate(images())
    ]
    gens = blip.generate(items)
    assert [g.output_tokens <= (2 if i % 2 else MAX_NEW) for i, g in enumerate(gens)] == [True] * 4
    assert gens[1].output_tokens == 2 and gens[1].finish_reason == "length"


def test_task_is_refused_before_any_model_work(blip: BlipBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: Any) -> None:
        raise AssertionError("model work started")

    monkeypatch.setattr(blip, "preprocess", boom)
    with pytest.raises(CapabilityError) as info:
        blip.generate([Prompted(image=images()[0]), Prompted(image=images()[1], task="<OD>")])
    assert info.value.code == "unsupported_request"
    assert "supported tasks: none" in str(info.value)


def test_missing_directory_is_model_not_found(tmp_path: Path) -> None:
    backend = registry.create_backend(ModelSettings(name=str(tmp_path), backend="blip", device="cpu"))
    with pytest.raises(ModelNotFound) as info:
        backend.load()
    assert "save_pretrained" in str(info.value)


def test_8bit_on_cpu_loads_int8_and_captions_a_batch(blip_dir: Path) -> None:
    backend = registry.create_backend(ModelSettings(name=str(blip_dir), quantization="8bit", device="cpu"))
    backend.load()
    linears = [type(m).__module__ for m in backend.model.modules() if "Linear" in type(m).__name__]
    assert any("quantized" in kind for kind in linears)
    images = [Image.new("RGB", (40 + 10 * i, 30)) for i in range(3)]
    gens = backend.generate([Prompted(image=img) for img in images])
    assert len(gens) == 3 and all(g.output_tokens >= 0 for g in gens)
