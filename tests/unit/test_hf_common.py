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
        assert "num_beams" not in kwargs and "repetition_penalty" not in kwargs

    def test_sampling_when_temperature_is_positive(self) -> None:
        kwargs = hf_common.generate_kwargs(GenerationParams(max_new_tokens=8, temperature=0.7, top_p=0.9))
        assert kwargs["do_sample"] is True
        assert kwargs["temperature"] == 0.7 and kwargs["top_p"] == 0.9

    def test_unset_values_are_left_to_the_checkpoint(self) -> None:
        kwargs = hf_common.generate_kwargs(GenerationParams(max_new_tokens=4))
        assert kwargs == {"max_new_tokens": 4}
        sampling = hf_common.generate_kwargs(GenerationParams(max_new_tokens=4, temperature=0.5))
        assert "top_p" not in sampling and sampling["do_sample"] is True

    def test_descry_defaults_are_greedy_and_leave_the_rest_unset(self) -> None:
        from descry.backends.base import DEFAULT_PARAMS

        kwargs = hf_common.generate_kwargs(DEFAULT_PARAMS)
        assert kwargs["do_sample"] is False
        assert not {"repetition_penalty", "num_beams", "top_p", "temperature"} & kwargs.keys()

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
    @pytest.fixture(autouse=True)
    def model_is_there(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """These tests are about the loader's errors: the model itself is taken as found (see TestModelSource)."""
        monkeypatch.setattr(hf_common, "model_source", lambda spec: {})

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
        assert '-e ".[hf]"' in (info.value.hint or "")


class TestMissingPackage:
    """A checkpoint whose code needs a package that is not installed: one message naming it, no traceback."""

    @pytest.mark.parametrize(
        ("error", "package"),
        [
            (ModuleNotFoundError("No module named 'num2words'", name="num2words"), "num2words"),
            (ImportError("Package `num2words` is required to run SmolVLM processor. Install it."), "num2words"),
            (ImportError("\nVideoProcessor requires the Torchvision library but it was not found"), "torchvision"),
        ],
    )
    def test_the_package_is_named_with_its_install_command(
        self, error: ImportError, package: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def loader(*_: Any, **__: Any) -> None:
            raise error

        monkeypatch.setattr(hf_common, "model_source", lambda spec: {})
        with pytest.raises(MissingDependency) as info:
            hf_common.load_pretrained(loader, spec(model_id="/models/smol"))
        assert info.value.package == package
        assert "/models/smol" in str(info.value) and f"pip install -c constraints.txt {package}" in str(info.value)

    def test_transformers_itself_is_the_hf_extra(self) -> None:
        error = ModuleNotFoundError("No module named 'transformers'", name="transformers")
        found = hf_common.missing_package(spec(), error)
        assert isinstance(found, MissingDependency) and '".[hf]"' in (found.hint or "")

    def test_an_unparsed_import_error_is_still_a_config_error(self) -> None:
        found = hf_common.missing_package(spec(), ImportError("cannot import name 'Foo' from 'bar'\nmore"))
        assert isinstance(found, ConfigError) and "cannot import name" in str(found) and "\n" not in str(found)


class TestModelSource:
    """Before transformers looks for a model: a directory must be a saved model, a path must exist, and a
    model id that is not cached fails at once when the hub cannot be reached."""

    @pytest.fixture
    def hub_state(self, monkeypatch: pytest.MonkeyPatch) -> dict[str, bool]:
        from descry.backends import hub

        state = {"cached": False, "reachable": False, "offline": False}
        monkeypatch.setattr(hub, "cached", lambda model_id, revision=None: state["cached"])
        monkeypatch.setattr(hub, "reachable", lambda: state["reachable"])
        monkeypatch.setattr(hub, "offline", lambda: state["offline"])
        return state

    def test_a_saved_model_directory_is_used_as_it_is(self, tmp_path: Path, hub_state: dict[str, bool]) -> None:
        (tmp_path / "config.json").write_text("{}")
        assert hf_common.model_source(spec(model_id=str(tmp_path))) == {}

    def test_a_directory_without_config_json_is_not_a_model(self, tmp_path: Path, hub_state: dict[str, bool]) -> None:
        with pytest.raises(ModelNotFound) as info:
            hf_common.model_source(spec(model_id=str(tmp_path)))
        assert "config.json" in str(info.value) and str(tmp_path) in str(info.value)

    @pytest.mark.parametrize("name", ["/no/such/model", "./florence2-base", "~/models/x", "a/b/c"])
    def test_a_path_that_does_not_exist_never_reaches_the_hub(self, name: str, hub_state: dict[str, bool]) -> None:
        hub_state["reachable"] = True
        with pytest.raises(ModelNotFound) as info:
            hf_common.model_source(spec(model_id=name))
        assert name in str(info.value) and "descry models" in (info.value.hint or "")

    def test_a_typo_suggests_the_closest_preset_when_the_hub_is_unreachable(self, hub_state: dict[str, bool]) -> None:
        with pytest.raises(ModelNotFound) as info:
            hf_common.model_source(spec(model_id="florence2-base"))
        assert "florence-2-base" in (info.value.hint or "") and "descry models" in (info.value.hint or "")

    def test_offline_mode_fails_without_asking_the_hub(
        self, hub_state: dict[str, bool], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from descry.backends import hub

        hub_state["offline"] = True
        monkeypatch.setattr(hub, "reachable", lambda: pytest.fail("the hub must not be asked offline"))
        with pytest.raises(ModelNotFound) as info:
            hf_common.model_source(spec(model_id="florence-community/Florence-2-base"))
        assert "HF_HUB_OFFLINE" in str(info.value) and "florence-2-base" in str(info.value)

    def test_a_reachable_hub_downloads(self, hub_state: dict[str, bool]) -> None:
        hub_state["reachable"] = True
        assert hf_common.model_source(spec(model_id="org/model")) == {}

    @pytest.mark.parametrize(("reachable", "offline"), [(False, False), (True, True)])
    def test_a_cached_model_without_a_hub_loads_from_the_cache_only(
        self, hub_state: dict[str, bool], reachable: bool, offline: bool
    ) -> None:
        hub_state.update(cached=True, reachable=reachable, offline=offline)
        assert hf_common.model_source(spec(model_id="org/model")) == {"local_files_only": True}

    def test_a_cached_model_with_a_hub_loads_as_usual(self, hub_state: dict[str, bool]) -> None:
        hub_state.update(cached=True, reachable=True)
        assert hf_common.model_source(spec(model_id="org/model")) == {}

    def test_load_pretrained_passes_local_files_only(self, hub_state: dict[str, bool]) -> None:
        hub_state["cached"] = True
        seen: dict[str, Any] = {}
        hf_common.load_pretrained(lambda source, **kw: seen.update(kw), spec(model_id="org/model"))
        assert seen["local_files_only"] is True


def test_the_hub_probe_is_quick_and_needs_no_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket
    import time

    from descry.backends import hub

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    monkeypatch.setattr(hub, "endpoint", lambda: closed)
    monkeypatch.setattr(hub, "_probes", {})
    t0 = time.perf_counter()
    assert hub.reachable() is False
    assert time.perf_counter() - t0 < hub.PROBE_TIMEOUT_S + 1


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
