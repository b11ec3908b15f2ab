"""The hf_vlm backend on tiny random Qwen2.5-VL, Idefics3 (SmolVLM) and LLaVA models, loaded the normal way."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from PIL import Image  # noqa: E402

from descry.backends import registry  # noqa: E402
from descry.backends.base import Backend, Prompted  # noqa: E402
from descry.backends.hf_vlm import HFVisionBackend, VLMBatch  # noqa: E402
from descry.config import ModelSettings  # noqa: E402
from descry.errors import ConfigError, ModelNotFound  # noqa: E402
from descry.schemas import GenerationParams  # noqa: E402
from tests.conftest import varied_images  # noqa: E402
from tests.tiny.hf_vlm import build_tiny_idefics3, build_tiny_llava, build_tiny_qwen2_5_vl  # noqa: E402

pytestmark = pytest.mark.slow

BUILDERS: dict[str, Callable[[Path], Path]] = {
    "qwen2_5_vl": build_tiny_qwen2_5_vl,
    "idefics3": build_tiny_idefics3,
    "llava": build_tiny_llava,
}
PROMPTS = ["A photo", "Describe this image in detail: the subjects, setting and colours.", None]
TIMING_KEYS = {"preprocess_s", "generate_s", "postprocess_s", "batch_size"}


@pytest.fixture(scope="session", params=sorted(BUILDERS))
def tiny_vlm(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Backend:
    """A loaded hf_vlm backend per family, built once per session."""
    family = request.param
    path = BUILDERS[family](tmp_path_factory.mktemp(f"tiny-{family}"))
    backend = registry.create_backend(ModelSettings(name=str(path), device="cpu"))
    backend.load()
    yield backend
    backend.close()


def images() -> list[Image.Image]:
    return varied_images(3)


def prompted(params: GenerationParams, prompts: list[str | None] = PROMPTS) -> list[Prompted]:
    return [Prompted(image=img, prompt=p, params=params) for img, p in zip(images(), prompts, strict=True)]


def test_loads_through_the_registry_as_hf_vlm(tiny_vlm: Backend) -> None:
    assert isinstance(tiny_vlm, HFVisionBackend)
    assert tiny_vlm.loaded and tiny_vlm.device == "cpu"
    assert tiny_vlm.capabilities.instruct and tiny_vlm.capabilities.batching
    assert tiny_vlm.processor.tokenizer.padding_side == "left"


def test_batch_of_three_in_one_generate_call(tiny_vlm: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    original = tiny_vlm.model.generate

    def counting(**kwargs: object) -> object:
        calls.append(int(kwargs["input_ids"].shape[0]))  # type: ignore[attr-defined]
        return original(**kwargs)

    monkeypatch.setattr(tiny_vlm.model, "generate", counting)
    out = tiny_vlm.generate(prompted(GenerationParams(max_new_tokens=5)))
    assert calls == [3]
    assert len(out) == 3
    for gen in out:
        assert isinstance(gen.text, str)
        assert gen.prompt_tokens > 0
        assert 0 < gen.output_tokens <= 5
        assert gen.finish_reason in {"stop", "length"}
        assert gen.finish_reason == "stop" or gen.output_tokens == 5
        assert gen.timings.keys() >= TIMING_KEYS
        assert gen.timings["batch_size"] == 3


def test_results_follow_input_order(tiny_vlm: Backend) -> None:
    params = GenerationParams(max_new_tokens=2)
    for prompts in (PROMPTS, list(reversed(PROMPTS))):
        items = prompted(params, prompts)
        batched = [g.prompt_tokens for g in tiny_vlm.generate(items)]
        alone = [tiny_vlm.generate([item])[0].prompt_tokens for item in items]
        assert batched == alone
        assert len(set(alone)) == 3, "items must differ for the order to be observable"


def test_max_new_tokens_is_respected_per_run(tiny_vlm: Backend) -> None:
    for limit in (1, 4):
        out = tiny_vlm.generate(prompted(GenerationParams(max_new_tokens=limit)))
        assert all(0 < g.output_tokens <= limit for g in out)


def test_min_new_tokens_forces_the_length(tiny_vlm: Backend) -> None:
    out = tiny_vlm.generate(prompted(GenerationParams(max_new_tokens=6, min_new_tokens=6)))
    assert [g.output_tokens for g in out] == [6, 6, 6]
    assert {g.finish_reason for g in out} == {"length"}


def test_mixed_parameters_in_one_batch_are_rejected(tiny_vlm: Backend) -> None:
    items = prompted(GenerationParams(max_new_tokens=2))
    items[1] = replace(items[1], params=GenerationParams(max_new_tokens=3))
    with pytest.raises(ValueError, match="share"):
        tiny_vlm.generate(items)


def test_postprocess_counts_up_to_eos_and_ignores_padding(tiny_vlm: Backend) -> None:
    backend = tiny_vlm
    assert isinstance(backend, HFVisionBackend)
    eos = min(backend._eos_token_ids())
    pad = backend._pad_token_id()
    word = next(i for i in range(len(backend.processor.tokenizer)) if i not in {eos, pad})
    prompt = [[pad, word, word], [word, word, word]]
    raw = torch.tensor([prompt[0] + [word, eos, pad, pad], prompt[1] + [word, word, word, word]])
    batch = VLMBatch(inputs=None, params=GenerationParams(max_new_tokens=4), input_length=3, prompt_tokens=[2, 3])
    first, second = backend.postprocess(batch, raw)
    assert (first.output_tokens, first.finish_reason, first.prompt_tokens) == (2, "stop", 2)
    assert (second.output_tokens, second.finish_reason, second.prompt_tokens) == (4, "length", 3)


def test_default_prompt_comes_from_the_spec(tiny_vlm: Backend) -> None:
    params = GenerationParams(max_new_tokens=1)
    item = prompted(params)[0]
    default = tiny_vlm.generate([replace(item, prompt=None)])[0]
    explicit = tiny_vlm.generate([replace(item, prompt=tiny_vlm.spec.default_prompt)])[0]
    assert default.prompt_tokens == explicit.prompt_tokens


def test_qwen_honours_max_pixels(tmp_path_factory: pytest.TempPathFactory) -> None:
    path = build_tiny_qwen2_5_vl(tmp_path_factory.mktemp("tiny-qwen-pixels"))
    counts = []
    for max_pixels in (28 * 28 * 4, 28 * 28 * 16):
        backend = registry.create_backend(ModelSettings(name=str(path), device="cpu"))
        backend.spec = replace(backend.spec, options={**backend.spec.options, "max_pixels": max_pixels})
        backend.load()
        image = Image.new("RGB", (224, 224), "white")
        counts.append(backend.generate([Prompted(image=image, params=GenerationParams(max_new_tokens=1))])[0])
    small, large = (g.prompt_tokens for g in counts)
    assert large - small == 16 - 4


def test_missing_model_offline_is_model_not_found(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True, raising=False)
    backend = registry.create_backend(ModelSettings(name="descry-tests/no-such-vlm", device="cpu"))
    assert isinstance(backend, HFVisionBackend)
    with pytest.raises(ModelNotFound) as info:
        backend.load()
    assert info.value.code == "model_not_found"
    assert info.value.hint


def test_directory_without_a_vision_model_is_a_config_error(tmp_path: Path) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    vlm = build_tiny_llava(tmp_path / "vlm")
    text_only = tmp_path / "text-only"
    LlamaForCausalLM(
        LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    ).save_pretrained(text_only)
    for name in ("tokenizer.json", "tokenizer_config.json", "processor_config.json", "chat_template.jinja"):
        if (vlm / name).is_file():
            (text_only / name).write_bytes((vlm / name).read_bytes())
    backend = registry.create_backend(ModelSettings(name=str(text_only), device="cpu"))
    with pytest.raises(ConfigError) as info:
        backend.load()
    assert info.value.hint
