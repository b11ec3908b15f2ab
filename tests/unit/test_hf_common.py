"""Device, dtype, quantization, loading and generate-argument helpers shared by the transformers backends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from descry.backends import hf_common  # noqa: E402
from descry.backends.base import ModelSpec  # noqa: E402
from descry.errors import ConfigError, MissingDependency, ModelNotFound, OutOfMemory  # noqa: E402
from descry.schemas import GenerationParams  # noqa: E402


@pytest.fixture
def cpu_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make this machine look like one without CUDA or MPS."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


def spec(**kw: Any) -> ModelSpec:
    return ModelSpec(model_id=kw.pop("model_id", "org/model"), backend="hf_vlm", **kw)


@pytest.mark.usefixtures("cpu_only")
class TestDevice:
    def test_auto_is_cpu_without_accelerators(self) -> None:
        assert hf_common.resolve_device("auto") == "cpu"

    @pytest.mark.parametrize("device", ["cuda", "cuda:1"])
    def test_cuda_without_cuda_is_a_config_error(self, device: str) -> None:
        with pytest.raises(ConfigError) as info:
            hf_common.resolve_device(device)
        assert "cpu" in (info.value.hint or "")

    def test_mps_without_mps_is_a_config_error(self) -> None:
        with pytest.raises(ConfigError):
            hf_common.resolve_device("mps")

    def test_unknown_device_is_a_config_error(self) -> None:
        with pytest.raises(ConfigError) as info:
            hf_common.resolve_device("bogus")
        assert info.value.code == "config_error"
        assert "auto, cpu" in (info.value.hint or "")

    def test_cpu_is_accepted(self) -> None:
        assert hf_common.resolve_device("cpu") == "cpu"


class TestDtype:
    def test_auto_on_cpu_is_float32(self) -> None:
        assert hf_common.resolve_dtype("auto", "cpu") is torch.float32

    def test_auto_on_mps_is_float16(self) -> None:
        assert hf_common.resolve_dtype("auto", "mps") is torch.float16

    @pytest.mark.parametrize("name", ["float32", "bfloat16", "float16"])
    def test_explicit_dtype_is_kept(self, name: str) -> None:
        assert hf_common.resolve_dtype(name, "cpu") is getattr(torch, name)


class TestQuantization:
    def test_none_needs_nothing(self) -> None:
        assert hf_common.quantization_config(spec(), "cpu") is None

    def test_4bit_on_cpu_is_a_config_error(self) -> None:
        with pytest.raises(ConfigError) as info:
            hf_common.quantization_config(spec(quantization="4bit"), "cpu")
        assert "4bit" in info.value.message
        assert info.value.hint

    @pytest.mark.parametrize("mode", ["8bit", "4bit"])
    def test_quantization_on_mps_is_a_config_error(self, mode: str) -> None:
        with pytest.raises(ConfigError):
            hf_common.quantization_config(spec(quantization=mode), "mps")

    def test_8bit_on_cpu_is_dynamic_int8_of_the_linear_layers(self) -> None:
        assert hf_common.quantization_config(spec(quantization="8bit"), "cpu") is None
        model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
        where = hf_common.Placement("cpu", torch.float32, None)
        quantized = hf_common.finish_loading(model, spec(quantization="8bit"), where)
        kinds = {type(m).__module__ for m in quantized.modules() if "Linear" in type(m).__name__}
        assert kinds and all("quantized" in k for k in kinds)
        assert quantized(torch.randn(3, 8)).shape == (3, 4)
        plain = hf_common.finish_loading(torch.nn.Linear(8, 4), spec(), where)
        assert type(plain) is torch.nn.Linear and not plain.training


class TestGenerateKwargs:
    def test_greedy_when_temperature_is_zero(self) -> None:
        kwargs = hf_common.generate_kwargs(GenerationParams(max_new_tokens=12, temperature=0.0, top_p=0.5))
        assert kwargs["do_sample"] is False
        assert "temperature" not in kwargs and "top_p" not in kwargs
        assert kwargs["max_new_tokens"] == 12
        assert kwargs["num_beams"] == 1 and kwargs["repetition_penalty"] == 1.0

    def test_sampling_when_temperature_is_positive(self) -> None:
        kwargs = hf_common.generate_kwargs(GenerationParams(max_new_tokens=8, temperature=0.7, top_p=0.9))
        assert kwargs["do_sample"] is True
        assert kwargs["temperature"] == 0.7 and kwargs["top_p"] == 0.9

    def test_unset_temperature_is_greedy(self) -> None:
        assert hf_common.generate_kwargs(GenerationParams(max_new_tokens=4))["do_sample"] is False

    def test_beams_penalty_and_min_tokens_pass_through(self) -> None:
        params = GenerationParams(max_new_tokens=9, min_new_tokens=9, num_beams=3, repetition_penalty=1.3)
        kwargs = hf_common.generate_kwargs(params)
        assert (kwargs["min_new_tokens"], kwargs["num_beams"], kwargs["repetition_penalty"]) == (9, 3, 1.3)

    def test_zero_min_tokens_is_left_out(self) -> None:
        assert "min_new_tokens" not in hf_common.generate_kwargs(GenerationParams(max_new_tokens=3, min_new_tokens=0))


class TestBatchParams:
    def test_equal_params_give_one_set(self) -> None:
        params = [GenerationParams(max_new_tokens=5) for _ in range(3)]
        assert hf_common.batch_params(params) == GenerationParams(max_new_tokens=5)

    def test_mixed_params_are_rejected(self) -> None:
        with pytest.raises(ValueError, match="share"):
            hf_common.batch_params([GenerationParams(max_new_tokens=5), GenerationParams(max_new_tokens=6)])


class TestLoading:
    def test_missing_hub_model_says_how_to_get_it(self) -> None:
        def loader(*_: Any, **__: Any) -> None:
            raise OSError("org/model is not a local folder and is not a valid model identifier")

        with pytest.raises(ModelNotFound) as info:
            hf_common.load_pretrained(loader, spec())
        assert "--model" in (info.value.hint or "")

    def test_broken_local_directory_names_the_files(self, tmp_path: Path) -> None:
        def loader(*_: Any, **__: Any) -> None:
            raise OSError("no file named config.json")

        with pytest.raises(ModelNotFound) as info:
            hf_common.load_pretrained(loader, spec(model_id=str(tmp_path)))
        assert "config.json" in str(info.value)

    def test_offline_value_error_is_model_not_found(self) -> None:
        def loader(*_: Any, **__: Any) -> None:
            raise ValueError("We couldn't connect to the Hub and you are in offline mode")

        with pytest.raises(ModelNotFound):
            hf_common.load_pretrained(loader, spec())

    def test_other_value_errors_pass_through(self) -> None:
        def loader(*_: Any, **__: Any) -> None:
            raise ValueError("Unrecognized configuration class")

        with pytest.raises(ValueError, match="Unrecognized"):
            hf_common.load_pretrained(loader, spec())

    def test_loader_gets_revision_and_remote_code_flag(self) -> None:
        seen: dict[str, Any] = {}

        def loader(source: str, **kwargs: Any) -> str:
            seen.update(kwargs, source=source)
            return "ok"

        assert hf_common.load_pretrained(loader, spec(revision="abc", trust_remote_code=True), dtype="x") == "ok"
        assert seen == {"source": "org/model", "revision": "abc", "trust_remote_code": True, "dtype": "x"}

    def test_missing_package_names_the_extra(self) -> None:
        with pytest.raises(MissingDependency) as info:
            hf_common.require("descry_no_such_module_xyz", "hf")
        assert "descry[hf]" in (info.value.hint or "")


class TestRunGuarded:
    def test_out_of_memory_becomes_retryable_error(self) -> None:
        def boom() -> None:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

        with pytest.raises(OutOfMemory) as info:
            hf_common.run_guarded(boom)
        assert info.value.retryable and "batch" in (info.value.hint or "")

    def test_other_runtime_errors_pass_through(self) -> None:
        def boom() -> None:
            raise RuntimeError("shape mismatch")

        with pytest.raises(RuntimeError, match="shape mismatch"):
            hf_common.run_guarded(boom)

    def test_result_is_returned(self) -> None:
        assert hf_common.run_guarded(lambda: 42) == 42


def test_attention_choice_prefers_an_explicit_option_and_needs_flash_attn_for_cuda(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    from descry.backends.hf_common import attention_for

    assert attention_for("cpu", {}) == "sdpa"
    assert attention_for("cpu", {}, fallback="eager") == "eager"
    assert attention_for("cpu", {"attn_implementation": "eager"}) == "eager"
    with pytest.raises(ConfigError):
        attention_for("cpu", {"attn_implementation": "magic"})
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object() if name == "flash_attn" else None)
    assert attention_for("cuda", {}) == "flash_attention_2"
    assert attention_for("cpu", {}) == "sdpa"


def test_compile_wraps_the_forward_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    compiled: list[object] = []

    def fake_compile(fn: object, **kwargs: object) -> object:
        compiled.append(kwargs)
        return fn

    monkeypatch.setattr(torch, "compile", fake_compile)
    where = hf_common.Placement("cpu", torch.float32, None)
    hf_common.finish_loading(torch.nn.Linear(2, 2), spec(), where)
    assert compiled == []
    hf_common.finish_loading(torch.nn.Linear(2, 2), spec(compile=True), where)
    assert compiled == [{"dynamic": True}]
