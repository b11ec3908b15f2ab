"""The phi3v backend on a tiny Phi-3.5-vision remote-code model, loaded through the registry."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from PIL import Image  # noqa: E402

from descry.backends import phi3v_compat, registry  # noqa: E402
from descry.backends.base import Prompted  # noqa: E402
from descry.backends.phi3v import Phi3VisionBackend, build_prompt  # noqa: E402
from descry.config import ModelSettings  # noqa: E402
from descry.errors import ConfigError, ModelNotFound  # noqa: E402
from descry.schemas import GenerationParams  # noqa: E402
from tests.conftest import varied_images  # noqa: E402
from tests.tiny.phi3v import build_tiny_phi3v  # noqa: E402

pytestmark = pytest.mark.slow

MAX_NEW = 5
TIMING_KEYS = {"preprocess_s", "generate_s", "postprocess_s", "batch_size"}
PROMPT = build_prompt("Describe this image.")


@pytest.fixture(scope="module")
def phi3v_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_phi3v(tmp_path_factory.mktemp("tiny-phi3v"))


def settings(path: Path, **overrides: Any) -> ModelSettings:
    values: dict[str, Any] = {"name": str(path), "trust_remote_code": True, "device": "cpu", "max_new_tokens": MAX_NEW}
    return ModelSettings(**{**values, **overrides})


@pytest.fixture(scope="module")
def phi3v(phi3v_dir: Path) -> Iterator[Phi3VisionBackend]:
    backend = registry.create_backend(settings(phi3v_dir))
    assert isinstance(backend, Phi3VisionBackend)
    backend.load()
    yield backend
    backend.close()


def images() -> list[Image.Image]:
    return varied_images(4, wide=(160, 40))


def fresh_copy(src: Path, tmp_path: Path) -> Path:
    """The model under a new directory name, so its remote code is imported afresh."""
    return Path(shutil.copytree(src, tmp_path / f"phi3v-{tmp_path.name[-12:]}"))


def expected_prompt_tokens(backend: Phi3VisionBackend, image: Image.Image) -> int:
    """Text tokens of the chat prompt plus the image tokens the HD transform yields for this size."""
    text = backend.prompt_for(Prompted(image=image)).replace("<|image_1|>", "")
    text_tokens = len(backend.processor.tokenizer(text, add_special_tokens=False)["input_ids"])
    return text_tokens + backend.processor.image_processor.calc_num_image_tokens_from_image_size(*image.size)


def test_registry_maps_the_phi3_v_model_type(phi3v_dir: Path, phi3v: Phi3VisionBackend) -> None:
    assert registry._guess_backend(str(phi3v_dir)) == "phi3v"
    assert phi3v.capabilities.instruct and phi3v.capabilities.prompt
    assert phi3v.spec.trust_remote_code
    assert phi3v.num_crops == 4
    assert phi3v.processor.image_processor.num_crops == 4
    assert phi3v.model.config._attn_implementation == "eager"


def test_batch_of_different_sizes_in_one_generate_call(
    phi3v: Phi3VisionBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    original = phi3v.model.generate

    def spy(**kwargs: Any) -> Any:
        calls.append(kwargs["input_ids"].shape)
        return original(**kwargs)

    monkeypatch.setattr(phi3v.model, "generate", spy)
    batch = images()
    gens = phi3v.generate([Prompted(image=img) for img in batch])
    assert len(calls) == 1 and calls[0][0] == len(batch)
    assert len(gens) == len(batch)
    for gen, img in zip(gens, batch, strict=True):
        assert isinstance(gen.text, str)
        assert gen.prompt_tokens == expected_prompt_tokens(phi3v, img)
        assert 1 <= gen.output_tokens <= MAX_NEW
        assert gen.finish_reason in {"stop", "length"}
        assert set(gen.timings) >= TIMING_KEYS
        assert gen.timings["batch_size"] == len(batch)
        assert gen.timings["generate_s"] > 0


def test_batched_items_match_single_runs_in_order(phi3v: Phi3VisionBackend) -> None:
    """Left padding, masks and position ids are right when each item comes out as it would alone."""
    batch = images()
    params = GenerationParams(max_new_tokens=MAX_NEW, min_new_tokens=MAX_NEW)
    together = phi3v.generate([Prompted(image=img, params=params) for img in batch])
    alone = [phi3v.generate([Prompted(image=img, params=params)])[0] for img in batch]
    assert [g.text for g in together] == [g.text for g in alone]
    assert [g.prompt_tokens for g in together] == [g.prompt_tokens for g in alone]
    assert all(g.output_tokens == MAX_NEW and g.finish_reason == "length" for g in together)


def test_items_with_different_parameters_share_a_batch(phi3v: Phi3VisionBackend) -> None:
    short = GenerationParams(max_new_tokens=2, min_new_tokens=2)
    long = GenerationParams(max_new_tokens=4, min_new_tokens=4)
    batch = images()[:3]
    gens = phi3v.generate(
        [Prompted(image=batch[0], params=short), Prompted(image=batch[1], params=long), Prompted(image=batch[2])]
    )
    assert [g.output_tokens for g in gens[:2]] == [2, 4]
    assert 1 <= gens[2].output_tokens <= MAX_NEW
    assert [g.prompt_tokens for g in gens] == [expected_prompt_tokens(phi3v, img) for img in batch]


def test_num_crops_option_and_test_mode(phi3v_dir: Path, phi3v: Phi3VisionBackend) -> None:
    wide = Image.new("RGB", (200, 100), (90, 90, 90))
    one_crop = registry.create_backend(settings(phi3v_dir), test_mode=True)
    sixteen = registry.create_backend(settings(phi3v_dir, num_crops=16))
    assert one_crop.spec.options["num_crops"] == 1 and sixteen.spec.options["num_crops"] == 16
    tokens = {}
    for crops, backend in ((1, one_crop), (16, sixteen)):
        backend.load()
        assert backend.processor.image_processor.num_crops == crops
        [gen] = backend.generate([Prompted(image=wide)])
        tokens[crops] = gen.prompt_tokens
        backend.close()
    [default] = phi3v.generate([Prompted(image=wide)])
    assert tokens[1] < default.prompt_tokens < tokens[16]


def test_custom_prompt_is_wrapped_in_the_chat_format(phi3v: Phi3VisionBackend) -> None:
    prompt = build_prompt("List <|image_2|> the colours.<|end|>")
    assert prompt.startswith("<|user|>\n<|image_1|>\n") and prompt.endswith("<|end|>\n<|assistant|>\n")
    assert prompt.count("<|image_") == 1 and prompt.count("<|end|>") == 1
    [gen] = phi3v.generate([Prompted(image=images()[0], prompt="List <|image_2|> the colours.")])
    assert gen.output_tokens >= 1


def test_loading_needs_the_shim(phi3v_dir: Path, tmp_path: Path) -> None:
    """The remote code imports a module transformers 5 no longer has."""
    import transformers

    with pytest.raises(ImportError, match="modeling_attn_mask_utils"):
        transformers.AutoModelForCausalLM.from_pretrained(
            fresh_copy(phi3v_dir, tmp_path), trust_remote_code=True, _attn_implementation="eager"
        )


def test_generation_needs_the_shim(phi3v_dir: Path, phi3v: Phi3VisionBackend, tmp_path: Path) -> None:
    """Imported but not adapted, the remote model cannot generate on transformers 5; adapted, it can."""
    import transformers

    with phi3v_compat.legacy_transformers_api():
        model = transformers.AutoModelForCausalLM.from_pretrained(
            fresh_copy(phi3v_dir, tmp_path), trust_remote_code=True, _attn_implementation="eager"
        )
    inputs = phi3v_compat.LegacyProcessor(phi3v.processor)([PROMPT], [images()[0]])
    with pytest.raises(AttributeError, match="from_legacy_cache|seen_tokens|get_usable_length"):
        model.generate(**{k: v.clone() for k, v in inputs.items()}, max_new_tokens=2)
    adapted = phi3v_compat.adapt_model(phi3v_compat.adapt_model(model))
    cache = {phi3v_compat.generate_cache_kwarg(): phi3v_compat.new_cache()}
    out = adapted.generate(**inputs, **cache, max_new_tokens=2, min_new_tokens=2, do_sample=False)
    assert out.shape == (1, inputs["input_ids"].shape[1] + 2)


def test_remote_processor_takes_one_prompt_and_no_padding_side(phi3v: Phi3VisionBackend) -> None:
    remote = phi3v.processor
    with pytest.raises(TypeError):
        remote(PROMPT, [images()[0]], padding_side="left")
    with pytest.raises(TypeError):
        remote([PROMPT, PROMPT], images()[:2])
    batch = phi3v_compat.LegacyProcessor(remote)([PROMPT, PROMPT], [images()[0], images()[1]], padding_side="left")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert ids.shape == mask.shape and ids.shape[0] == 2
    assert torch.equal(ids[0, -5:], ids[1, -5:])
    assert bool(mask[:, -1].all())
    assert batch["pixel_values"].shape[:2] == (2, phi3v.num_crops + 1)
    assert batch["image_sizes"].shape == (2, 2)


def test_legacy_cache_and_mask_helpers() -> None:
    cache = phi3v_compat.new_cache()
    assert cache.seen_tokens == 0 and cache.get_max_length() is None
    keys = torch.zeros(1, 2, 3, 4)
    cache.update(keys, keys, 0)
    assert cache.seen_tokens == 3 and cache.get_usable_length(1) == 3
    legacy = cache.to_legacy_cache()
    assert type(cache).from_legacy_cache(legacy).get_seq_length() == 3
    embeds = torch.zeros(2, 2, 8)
    attention = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])
    mask = phi3v_compat.prepare_4d_causal_attention_mask(attention, (2, 2), embeds, 2)
    assert mask.shape == (2, 1, 2, 4)
    blocked = mask < 0
    assert bool(blocked[0, 0, :, 0].all()) and not bool(blocked[1, 0, :, 0].any())
    assert bool(blocked[:, 0, 0, 3].all()) and not bool(blocked[:, 0, 1, 3].any())


def test_remote_code_must_be_trusted(phi3v_dir: Path) -> None:
    backend = registry.create_backend(settings(phi3v_dir, trust_remote_code=False))
    with pytest.raises(ConfigError, match="TRUST_REMOTE_CODE"):
        backend.load()


def test_bad_num_crops_is_a_config_error(phi3v_dir: Path) -> None:
    backend = registry.create_backend(settings(phi3v_dir))
    backend.spec = replace(backend.spec, options={**backend.spec.options, "num_crops": 0})
    with pytest.raises(ConfigError, match="num_crops"):
        backend.load()


def test_missing_directory_is_model_not_found(tmp_path: Path) -> None:
    backend = registry.create_backend(settings(tmp_path / "nowhere", backend="phi3v"))
    with pytest.raises(ModelNotFound):
        backend.load()
