"""The vLLM backend's wiring, against a stand-in ``vllm`` module (vLLM itself needs a GPU)."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field
from typing import Any

import pytest
from PIL import Image

from descry.backends.base import ModelSpec, Prompted
from descry.backends.vllm_offline import VLLMBackend
from descry.errors import MissingDependency
from descry.schemas import GenerationParams


@dataclass
class _Completion:
    text: str
    token_ids: list[int]
    finish_reason: str


@dataclass
class _Output:
    prompt_token_ids: list[int]
    outputs: list[_Completion]


@dataclass
class FakeLLM:
    kwargs: dict[str, Any]
    calls: list[tuple[list[Any], list[Any]]] = field(default_factory=list)
    defaults: types.SimpleNamespace = field(
        default_factory=lambda: types.SimpleNamespace(repetition_penalty=1.05, top_p=0.8, top_k=20, min_p=None)
    )

    def get_default_sampling_params(self) -> types.SimpleNamespace:
        return self.defaults

    def chat(self, conversations: list[Any], sampling_params: list[Any], use_tqdm: bool) -> list[_Output]:
        self.calls.append((conversations, sampling_params))
        outs = []
        for conversation, sampling in zip(conversations, sampling_params, strict=True):
            prompt = conversation[0]["content"][0]["text"]
            n = sampling["max_tokens"]
            outs.append(_Output([1] * 7, [_Completion(f" {prompt} ", list(range(n)), "length" if n < 5 else "stop")]))
        return outs


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    module = types.ModuleType("vllm")
    module.LLM = lambda **kwargs: FakeLLM(kwargs)  # type: ignore[attr-defined]
    module.SamplingParams = lambda **kwargs: kwargs  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", module)
    return module


def test_a_batch_is_one_chat_call_with_images_and_per_item_sampling(fake_vllm: types.ModuleType) -> None:
    backend = VLLMBackend(ModelSpec(model_id="Qwen/Qwen2.5-VL-7B-Instruct", backend="vllm", default_prompt="hi"))
    backend.load()
    assert backend.llm.kwargs["model"] == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert backend.llm.kwargs["limit_mm_per_prompt"] == {"image": 1}
    items = [
        Prompted(image=Image.new("RGB", (30 + i, 20)), prompt=f"p{i}", params=GenerationParams(max_new_tokens=3 + i))
        for i in range(3)
    ]
    gens = backend.generate(items)
    assert len(backend.llm.calls) == 1
    conversations, sampling = backend.llm.calls[0]
    assert [c[0]["content"][1]["image_url"]["url"][:15] for c in conversations] == ["data:image/jpeg"] * 3
    assert [s["max_tokens"] for s in sampling] == [3, 4, 5]
    assert [g.text for g in gens] == ["p0", "p1", "p2"]
    assert [g.output_tokens for g in gens] == [3, 4, 5]
    assert [g.finish_reason for g in gens] == ["length", "length", "stop"]
    assert all(g.prompt_tokens == 7 for g in gens)


def test_without_vllm_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)
    backend = VLLMBackend(ModelSpec(model_id="m", backend="vllm"))
    with pytest.raises(MissingDependency) as info:
        backend.load()
    assert '-e ".[vllm]"' in str(info.value)


def test_the_checkpoint_s_generation_defaults_apply_unless_the_user_sets_them(fake_vllm: types.ModuleType) -> None:
    backend = VLLMBackend(ModelSpec(model_id="m", backend="vllm", default_prompt="hi"))
    backend.load()
    unset = backend.sampling(GenerationParams(max_new_tokens=8))
    assert (unset["repetition_penalty"], unset["top_p"], unset["top_k"], unset["temperature"]) == (1.05, 0.8, 20, 0.0)
    assert "min_p" not in unset
    chosen = backend.sampling(GenerationParams(max_new_tokens=8, repetition_penalty=1.3, top_p=0.5, temperature=0.7))
    assert (chosen["repetition_penalty"], chosen["top_p"], chosen["temperature"]) == (1.3, 0.5, 0.7)
