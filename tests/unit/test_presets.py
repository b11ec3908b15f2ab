"""The preset catalogue: every preset is runnable by the backend it names and says what `descry models` shows."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from descry.backends import hub, registry
from descry.backends.base import CPU_LEVELS, Preset, chat_spec
from descry.cli import app
from descry.config import DEFAULT_MODEL

ASKED_FOR = {  # issue 15's list: preset -> hub id
    "qwen3-vl-2b": "Qwen/Qwen3-VL-2B-Instruct",
    "qwen3-vl-4b": "Qwen/Qwen3-VL-4B-Instruct",
    "qwen3-vl-8b": "Qwen/Qwen3-VL-8B-Instruct",
    "qwen2.5-vl-3b": "Qwen/Qwen2.5-VL-3B-Instruct",
    "qwen2.5-vl-7b": "Qwen/Qwen2.5-VL-7B-Instruct",
    "gemma-3-4b": "google/gemma-3-4b-it",
    "smolvlm2-256m": "HuggingFaceTB/SmolVLM2-256M-Video-Instruct",
    "smolvlm2-500m": "HuggingFaceTB/SmolVLM2-500M-Video-Instruct",
    "smolvlm2-2.2b": "HuggingFaceTB/SmolVLM2-2.2B-Instruct",
    "internvl3-1b": "OpenGVLab/InternVL3-1B-hf",
    "internvl3-2b": "OpenGVLab/InternVL3-2B-hf",
    "internvl3-8b": "OpenGVLab/InternVL3-8B-hf",
    "llava-onevision-0.5b": "llava-hf/llava-onevision-qwen2-0.5b-ov-hf",
    "llava-onevision-7b": "llava-hf/llava-onevision-qwen2-7b-ov-hf",
    "joycaption-beta-one": "fancyfeast/llama-joycaption-beta-one-hf-llava",
    "paligemma2-3b": "google/paligemma2-3b-mix-448",
    "florence-2-base": "florence-community/Florence-2-base",
    "florence-2-large": "florence-community/Florence-2-large",
    "blip-base": "Salesforce/blip-image-captioning-base",
    "blip-large": "Salesforce/blip-image-captioning-large",
    "phi-3.5-vision": "microsoft/Phi-3.5-vision-instruct",
}
EARLIER = {"smolvlm", "smolvlm-256m", "llava-1.5-7b"}  # presets from before issue 15 that docs and users name


def test_the_presets_people_asked_for_exist_with_their_hub_ids() -> None:
    found = registry.presets()
    assert {name: found[name].spec.model_id for name in ASKED_FOR if name in found} == ASKED_FOR
    assert set(found) >= EARLIER
    ids = [preset.spec.model_id for preset in found.values()]
    assert len(ids) == len(set(ids)), "two presets name the same model"


@pytest.mark.parametrize("name", sorted(registry.presets()))
def test_every_preset_model_type_is_served_by_its_backend(name: str) -> None:
    preset = registry.presets()[name]
    cat = registry.catalog()
    assert preset.model_type, f"{name} does not say its config.json model_type"
    assert cat.model_types.get(preset.model_type) == preset.spec.backend
    assert preset.spec.backend in cat.backends
    cat.backend(preset.spec.backend).check_options(dict(preset.spec.options))  # its options are accepted


@pytest.mark.parametrize("name", sorted(registry.presets()))
def test_every_preset_says_size_use_cpu_and_licence(name: str) -> None:
    preset = registry.presets()[name]
    assert preset.params_b > 0 and preset.download_gb > 0
    # a download is the weights: about 2 bytes a parameter (bf16/fp16), 4 for fp32 checkpoints
    assert 1.5 <= preset.download_gb / preset.params_b <= 4.5
    assert preset.good_at and preset.licence and preset.cpu in CPU_LEVELS
    assert preset.gated == (preset.licence in {"gemma", "llama3.2"})
    if preset.params_b >= 7:
        assert preset.cpu == "no"


def test_the_default_stays_small_enough_for_a_cpu() -> None:
    default = registry.presets()[DEFAULT_MODEL]
    assert default.cpu == "yes" and default.params_b < 1 and not default.gated


def test_preset_size_and_cpu_level() -> None:
    spec = chat_spec("org/m", "hf_vlm")
    assert Preset(spec, params_b=2.2, download_gb=4.45).size == "2.2B, 4.5 GB"
    assert Preset(spec).size == ""
    with pytest.raises(ValueError, match="cpu"):
        Preset(spec, cpu="maybe")


def test_models_json_carries_the_catalogue() -> None:
    result = CliRunner().invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert set(rows) == set(registry.presets())
    gemma = rows["gemma-3-4b"]
    assert (gemma["gated"], gemma["licence"], gemma["cpu"], gemma["model_type"]) == (True, "gemma", "slow", "gemma3")
    assert gemma["params_b"] == 4.3 and gemma["size"].startswith("4.3B")
    assert [name for name, row in rows.items() if row["default"]] == [DEFAULT_MODEL]


def test_models_table_shows_size_cpu_and_licence_columns() -> None:
    result = CliRunner().invoke(app, ["models"], env={"COLUMNS": "250"})
    assert result.exit_code == 0
    header, *lines = result.output.splitlines()
    assert header.split() == ["preset", "model", "id", "backend", "size", "CPU", "licence", "good", "at"]
    line = next(line for line in lines if line.startswith("internvl3-1b "))
    assert "OpenGVLab/InternVL3-1B-hf" in line and "0.94B" in line and " yes " in line and " mit " in line


class TestChooseFiles:
    def test_pickles_beside_safetensors_and_other_formats_are_left_out(self) -> None:
        sizes = {
            "config.json": 1,
            "model.safetensors": 100,
            "pytorch_model.bin": 100,
            "tf_model.h5": 100,
            "flax_model.msgpack": 100,
            "onnx/model.onnx": 100,
            "tokenizer.json": 5,
        }
        chosen, left = hub.choose_files(sizes)
        assert set(chosen) == {"config.json", "model.safetensors", "tokenizer.json"}
        assert set(left) == set(sizes) - set(chosen)
        assert hub.choose_files(sizes, all_files=True) == (sizes, {})

    def test_pickles_stay_when_they_are_the_only_weights(self) -> None:
        sizes = {"config.json": 1, "pytorch_model.bin": 100, "sub/model.safetensors": 3}
        chosen, _ = hub.choose_files(sizes)
        assert set(chosen) == set(sizes)

    def test_consolidated_copy_beside_shards_is_left_out(self) -> None:
        sizes = {"model-00001-of-00002.safetensors": 5, "model-00002-of-00002.safetensors": 5}
        chosen, left = hub.choose_files({**sizes, "consolidated.safetensors": 10, "original/params.json": 1})
        assert chosen == sizes and set(left) == {"consolidated.safetensors", "original/params.json"}


@pytest.mark.parametrize(
    ("size", "text"), [(0, "0 B"), (999, "999 B"), (1000, "1.0 kB"), (4_260_000_000, "4.3 GB"), (2e12, "2.0 TB")]
)
def test_human_size(size: int, text: str) -> None:
    assert hub.human_size(size) == text
