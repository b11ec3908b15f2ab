"""The backend registry: families declared on backend classes, aggregated from entry points once per process."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field

from descry.backends import registry
from descry.backends.base import Backend, BackendOptions, Generation, ModelSpec, Preset, Prompted
from descry.backends.blip import BlipBackend
from descry.backends.florence2 import Florence2Backend
from descry.backends.hf_vlm import HFVisionBackend
from descry.backends.openai_compat import OpenAICompatBackend
from descry.backends.phi3v import Phi3VisionBackend
from descry.backends.vllm_offline import VLLMBackend
from descry.config import ModelSettings, Settings
from descry.errors import ConfigError

BUILT_INS = (BlipBackend, Florence2Backend, HFVisionBackend, OpenAICompatBackend, Phi3VisionBackend, VLLMBackend)


class TinyOptions(BackendOptions):
    bias: float = 0.0
    layers: int = Field(2, ge=1)


class TinyBackend(Backend):
    """A plugin family: its own preset, model type and options."""

    name = "tiny"
    presets = {"tiny-preset": Preset(ModelSpec(model_id="plugin-org/tiny-1", backend="tiny"), "a plugin model")}
    model_types = frozenset({"tiny_vlm"})
    Options = TinyOptions

    @classmethod
    def claims_name(cls, model_id: str) -> bool:
        return "tiny" in model_id.lower()

    def load(self) -> None:
        self.loaded = True

    def preprocess(self, items: Sequence[Prompted]) -> Any:
        return items

    def forward(self, batch: Any) -> Any:
        return batch

    def postprocess(self, batch: Any, raw: Any) -> list[Generation]:
        return [Generation(text="") for _ in raw]


class GreedyBackend(TinyBackend):
    """A plugin that claims what a built-in already declares."""

    name = "greedy"
    presets = {"florence-2-base": Preset(ModelSpec(model_id="x/y", backend="greedy"))}
    model_types = frozenset()


@dataclass
class FakeEntryPoint:
    """An entry point whose load is counted (or fails)."""

    name: str
    target: object
    loads: list[str]
    value: str = ""
    error: Exception | None = None

    def __post_init__(self) -> None:
        self.value = self.value or f"plugin.module:{getattr(self.target, '__name__', 'x')}"

    def load(self) -> object:
        self.loads.append(self.name)
        if self.error is not None:
            raise self.error
        return self.target


@dataclass
class Installed:
    """What the fake ``entry_points`` reports, and how often it was scanned and loaded."""

    extra: list[FakeEntryPoint] = field(default_factory=list)
    scans: int = 0
    loads: list[str] = field(default_factory=list)

    def add(self, name: str, target: object, **kw: Any) -> None:
        self.extra.append(FakeEntryPoint(name, target, self.loads, **kw))

    def __call__(self, *, group: str) -> list[Any]:
        assert group == registry.ENTRY_POINT_GROUP
        self.scans += 1
        built_ins = [FakeEntryPoint(cls.name, cls, self.loads) for cls in BUILT_INS]
        return [*built_ins, *self.extra]


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> Iterator[Installed]:
    fake = Installed()
    registry.catalog.cache_clear()
    monkeypatch.setattr(registry, "entry_points", fake)
    yield fake
    registry.catalog.cache_clear()


@pytest.fixture
def with_tiny(installed: Installed) -> Installed:
    installed.add("tiny", TinyBackend)
    return installed


def resolve(name: str, **kw: Any) -> ModelSpec:
    return registry.resolve_spec(ModelSettings(name=name, **kw))


class TestPluginFamily:
    def test_the_plugin_preset_resolves_to_the_plugin(self, with_tiny: Installed) -> None:
        spec = resolve("tiny-preset")
        assert (spec.backend, spec.model_id) == ("tiny", "plugin-org/tiny-1")
        assert isinstance(registry.create_backend(ModelSettings(name="tiny-preset")), TinyBackend)

    def test_the_models_listing_shows_plugin_and_built_in_presets(self, with_tiny: Installed) -> None:
        listed = registry.presets()
        assert listed["tiny-preset"].spec.backend == "tiny"
        assert listed["tiny-preset"].note
        assert {"florence-2-base", "blip-base", "phi-3.5-vision", "qwen2.5-vl-3b"} <= set(listed)
        assert registry.PRESETS["tiny-preset"].model_id == "plugin-org/tiny-1"
        assert registry.PRESET_NOTES["tiny-preset"] == listed["tiny-preset"].note
        assert registry.preset_of("plugin-org/tiny-1") == "tiny-preset"
        assert registry.closest_preset("tiny_preset") == "tiny-preset"

    def test_a_directory_of_the_plugin_model_type_goes_to_the_plugin(
        self, with_tiny: Installed, tmp_path: Path
    ) -> None:
        (tmp_path / "config.json").write_text(json.dumps({"model_type": "tiny_vlm"}))
        assert registry.guess_backend(str(tmp_path)) == "tiny"
        assert resolve(str(tmp_path)).backend == "tiny"
        assert registry.MODEL_TYPE_BACKENDS["tiny_vlm"] == "tiny"

    def test_plugin_options_are_typed_and_checked(self, with_tiny: Installed) -> None:
        assert resolve("tiny-preset", options={"bias": "0.5", "layers": 3}).options == {"bias": 0.5, "layers": 3}
        for bad in ({"bias": "lots"}, {"layers": 0}, {"temperature_bias": 1.0}):
            with pytest.raises(ConfigError) as info:
                resolve("tiny-preset", options=bad)
            assert next(iter(bad)) in info.value.message and "tiny" in info.value.message

    def test_a_name_two_families_claim_must_be_chosen_explicitly(self, with_tiny: Installed) -> None:
        with pytest.raises(ConfigError) as info:
            resolve("org/tiny-florence")
        assert "tiny" in info.value.message and "florence2" in info.value.message
        assert resolve("org/tiny-florence", backend="florence2").backend == "florence2"


class TestLoadedOncePerProcess:
    def test_entry_points_are_scanned_and_loaded_once(self, with_tiny: Installed, tmp_path: Path) -> None:
        (tmp_path / "config.json").write_text(json.dumps({"model_type": "blip"}))
        for name in ("florence-2-base", "tiny-preset", "qwen2.5-vl-3b", str(tmp_path), "some/model"):
            registry.create_backend(ModelSettings(name=name))
        registry.presets()
        registry.closest_preset("florence2-base")
        registry.preset_of("Salesforce/blip-image-captioning-base")
        registry.backend_class("vllm")
        assert with_tiny.scans == 1
        assert sorted(with_tiny.loads) == sorted([cls.name for cls in BUILT_INS] + ["tiny"])


class TestConflicts:
    def test_two_backends_claiming_a_preset_are_named(self, installed: Installed) -> None:
        installed.add("greedy", GreedyBackend)
        with pytest.raises(ConfigError) as info:
            registry.presets()
        assert "florence-2-base" in info.value.message
        assert "florence2" in info.value.message and "greedy" in info.value.message

    def test_two_backends_claiming_a_model_type_are_named(self) -> None:
        other = type("OtherBackend", (TinyBackend,), {"presets": {}, "model_types": frozenset({"tiny_vlm"})})
        with pytest.raises(ConfigError) as info:
            registry.aggregate({"tiny": TinyBackend, "other": other})
        assert "tiny_vlm" in info.value.message
        assert "tiny" in info.value.message and "other" in info.value.message

    def test_two_packages_registering_one_backend_name_are_named(self, installed: Installed) -> None:
        installed.add("blip", TinyBackend, value="plugin.module:TinyBackend")
        with pytest.raises(ConfigError) as info:
            registry.catalog()
        assert "blip" in info.value.message and "plugin.module:TinyBackend" in info.value.message

    def test_a_broken_plugin_leaves_the_others_working(self, installed: Installed) -> None:
        installed.add("broken", None, error=ImportError("no module named tinylib"))
        installed.add("notabackend", object)
        assert resolve("florence-2-base").backend == "florence2"
        for name in ("broken", "notabackend"):
            with pytest.raises(ConfigError) as info:
                resolve("florence-2-base", backend=name)
            assert name in info.value.message


class TestBuiltInFamilies:
    def test_each_built_in_declares_its_family(self) -> None:
        owners = {name: preset.spec.backend for name, preset in registry.presets().items()}
        assert owners == {
            "florence-2-base": "florence2",
            "florence-2-large": "florence2",
            "blip-base": "blip",
            "blip-large": "blip",
            "phi-3.5-vision": "phi3v",
            "qwen2.5-vl-3b": "hf_vlm",
            "qwen2.5-vl-7b": "hf_vlm",
            "smolvlm": "hf_vlm",
            "smolvlm-256m": "hf_vlm",
            "llava-1.5-7b": "hf_vlm",
            **dict.fromkeys(
                ["qwen3-vl-2b", "qwen3-vl-4b", "qwen3-vl-8b", "gemma-3-4b", "smolvlm2-256m", "smolvlm2-500m"]
                + ["smolvlm2-2.2b", "internvl3-1b", "internvl3-2b", "internvl3-8b", "llava-onevision-0.5b"]
                + ["llava-onevision-7b", "joycaption-beta-one", "paligemma2-3b"],
                "hf_vlm",
            ),
        }
        types = registry.catalog().model_types
        assert {t: types[t] for t in ("florence2", "blip", "phi3_v")} == {
            "florence2": "florence2",
            "blip": "blip",
            "phi3_v": "phi3v",
        }
        for cls in BUILT_INS:
            assert cls.Options.model_config.get("extra") == "forbid"

    @pytest.mark.parametrize(
        ("name", "backend"),
        [
            ("microsoft/Florence-2-large-ft", "florence2"),
            ("Salesforce/blip-image-captioning-base", "blip"),
            ("Salesforce/blip2-opt-2.7b", "hf_vlm"),
            ("microsoft/Phi-3-vision-128k-instruct", "phi3v"),
            ("org/unknown", "hf_vlm"),
        ],
    )
    def test_model_ids_that_are_not_presets_are_detected_as_before(self, name: str, backend: str) -> None:
        assert registry.guess_backend(name) == backend

    def test_unknown_options_are_refused_naming_option_and_backend(self) -> None:
        with pytest.raises(ConfigError) as info:
            resolve("florence-2-base", options={"max_pixels": 1000})
        assert "max_pixels" in info.value.message and "florence2" in info.value.message
        with pytest.raises(ConfigError) as info:
            resolve("qwen2.5-vl-3b", options={"max_pixels": "lots"})
        assert "max_pixels" in info.value.message and "hf_vlm" in info.value.message
        with pytest.raises(ConfigError):
            resolve("some/model", base_url="http://localhost:1/v1", options={"request_timeout": 0})

    def test_options_from_the_environment_are_coerced(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("DESCRY_MODEL__NAME", "qwen2.5-vl-3b")
        monkeypatch.setenv("DESCRY_MODEL__OPTIONS__MAX_PIXELS", "1000")
        assert registry.resolve_spec(Settings().model).options == {"max_pixels": 1000}

    def test_settings_reach_only_the_backends_that_take_them(self) -> None:
        assert resolve("phi-3.5-vision", num_crops=16).options == {"num_crops": 16}
        assert resolve("florence-2-base", num_crops=16, attn_implementation="eager").options == {
            "attn_implementation": "eager"
        }
        remote = resolve("some/model", base_url="http://localhost:1/v1", api_key="k", max_retries=1)
        assert remote.backend == "openai_compat"
        assert remote.options["base_url"] == "http://localhost:1/v1" and remote.options["max_retries"] == 1
        assert "extra_body" not in remote.options
        assert resolve("qwen2.5-vl-3b", backend="vllm").options == {}
        with_args = resolve("qwen2.5-vl-3b", backend="vllm", options={"vllm_args": {"max_model_len": 4096}})
        assert with_args.options == {"vllm_args": {"max_model_len": 4096}}

    def test_test_mode_shrinks_only_what_the_backend_has(self) -> None:
        def options(name: str) -> dict[str, Any]:
            return registry.resolve_spec(ModelSettings(name=name), test_mode=True).options

        assert options("phi-3.5-vision")["num_crops"] == 1
        assert (
            options("qwen2.5-vl-3b")["max_pixels"] < HFVisionBackend.presets["qwen2.5-vl-3b"].spec.options["max_pixels"]
        )
        assert options("florence-2-base") == {}

    def test_the_spec_of_a_model_id_comes_from_its_family(self) -> None:
        florence = resolve("org/florence-2-finetune")
        assert florence.default_task == "<CAPTION>" and florence.default_prompt is None
        phi = resolve("org/phi-3-vision-ft")
        assert phi.trust_remote_code and phi.options == {"num_crops": 4}
        assert resolve("org/some-vlm").default_prompt
