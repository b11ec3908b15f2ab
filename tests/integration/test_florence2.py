"""The florence2 backend on a tiny random native Florence-2 model, loaded through the registry."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from PIL import Image  # noqa: E402

from descry.backends import registry  # noqa: E402
from descry.backends.base import Prompted  # noqa: E402
from descry.backends.florence2 import Florence2Backend  # noqa: E402
from descry.config import ModelSettings  # noqa: E402
from descry.errors import CapabilityError, ConfigError, ModelNotFound  # noqa: E402
from descry.schemas import GenerationParams  # noqa: E402
from tests.conftest import varied_images  # noqa: E402
from tests.tiny.florence2 import build_tiny_florence2  # noqa: E402

pytestmark = pytest.mark.slow

MAX_NEW = 8
TASKS = {"<CAPTION>", "<DETAILED_CAPTION>", "<MORE_DETAILED_CAPTION>", "<OD>", "<OCR>"}
TIMING_KEYS = {"preprocess_s", "generate_s", "postprocess_s", "batch_size"}


@pytest.fixture(scope="module")
def florence_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_florence2(tmp_path_factory.mktemp("tiny-florence2"))


@pytest.fixture(scope="module")
def florence(florence_dir: Path) -> Iterator[Florence2Backend]:
    settings = ModelSettings(name=str(florence_dir), device="cpu", max_new_tokens=MAX_NEW)
    backend = registry.create_backend(settings)
    assert isinstance(backend, Florence2Backend)
    backend.load()
    yield backend
    backend.close()


def images() -> list[Image.Image]:
    return varied_images(5)


def check_counts(backend: Florence2Backend, gens: list[Any], size: int) -> None:
    assert len(gens) == size
    for gen in gens:
        assert isinstance(gen.text, str)
        assert gen.prompt_tokens > backend.processor.num_image_tokens
        assert 1 <= gen.output_tokens <= MAX_NEW
        assert gen.finish_reason in {"stop", "length"}
        assert gen.timings.keys() >= TIMING_KEYS
        assert gen.timings["batch_size"] == size


def test_registry_maps_the_florence2_model_type(florence_dir: Path, florence: Florence2Backend) -> None:
    assert registry._guess_backend(str(florence_dir)) == "florence2"
    caps = florence.capabilities
    assert caps.tasks == frozenset(TASKS)
    assert (caps.prompt, caps.instruct, caps.batching, caps.default_task) == (False, False, True, "<CAPTION>")
    assert florence.spec.default_task == "<CAPTION>"


def test_default_task_captions_a_batch_in_one_call(florence: Florence2Backend) -> None:
    gens = florence.generate([Prompted(image=img) for img in images()[:3]])
    check_counts(florence, gens, 3)
    assert all(gen.structured is None for gen in gens)
    assert "<loc_" not in "".join(gen.text for gen in gens)


def test_every_task_in_one_batch_keeps_order(florence: Florence2Backend) -> None:
    tasks = ["<OD>", "<CAPTION>", "<OCR>", "<DETAILED_CAPTION>", "<MORE_DETAILED_CAPTION>"]
    items = [Prompted(image=img, task=task) for img, task in zip(images(), tasks, strict=True)]
    gens = florence.generate(items)
    check_counts(florence, gens, 5)
    singles = [florence.generate([item])[0] for item in items]
    for task, gen, single in zip(tasks, gens, singles, strict=True):
        assert (gen.structured is not None) == (task == "<OD>")
        assert gen.prompt_tokens == single.prompt_tokens
        if task == "<OD>":
            boxes, labels = gen.structured["bboxes"], gen.structured["labels"]
            assert len(boxes) == len(labels)
            assert all(len(box) == 4 and all(isinstance(v, float) for v in box) for box in boxes)
    # the task prompts differ in length, so prompt token counts follow the order of the tasks
    lengths = {t: florence.generate([Prompted(image=images()[0], task=t)])[0].prompt_tokens for t in tasks}
    assert [g.prompt_tokens for g in gens] == [lengths[t] for t in tasks]


def crafted(florence: Florence2Backend, task: str, body: str, size: tuple[int, int]) -> Any:
    """Run postprocess on a hand-written model output for one item of the given task."""
    tok = florence.processor.tokenizer
    item = Prompted(image=Image.new("RGB", size), task=task, params=GenerationParams(max_new_tokens=64))
    batch = florence.preprocess([item])
    body_ids = tok(body, add_special_tokens=False)["input_ids"]
    ids = [tok.eos_token_id, tok.bos_token_id, *body_ids, tok.eos_token_id]
    return florence.postprocess(batch, [torch.tensor([ids])])[0], len(ids) - 1


def test_od_output_becomes_boxes_and_labels(florence: Florence2Backend) -> None:
    body = (
        "car<loc_100><loc_200><loc_500><loc_900>dog<loc_0><loc_0><loc_999><loc_999>"
        "car<loc_1><loc_2><loc_3><loc_4>"
    )
    gen, count = crafted(florence, "<OD>", body, (200, 100))
    assert gen.structured["labels"] == ["car", "dog", "car"]
    boxes = gen.structured["bboxes"]
    assert len(boxes) == 3 and all(len(box) == 4 and all(isinstance(v, float) for v in box) for box in boxes)
    assert all(0 <= box[0] <= box[2] <= 200 and 0 <= box[1] <= box[3] <= 100 for box in boxes)
    assert boxes[1] == [0.0, 0.0, 199.0, 99.0]
    assert gen.text == "car, dog"
    assert (gen.output_tokens, gen.finish_reason) == (count, "stop")


def test_ocr_and_captions_are_plain_text(florence: Florence2Backend) -> None:
    gen, count = crafted(florence, "<OCR>", "EXIT<loc_5> 42", (50, 50))
    assert gen.text == "EXIT 42" and gen.structured is None
    assert (gen.output_tokens, gen.finish_reason) == (count, "stop")
    gen, _ = crafted(florence, "<CAPTION>", "a red car", (50, 50))
    assert gen.text == "a red car"


def test_forced_end_at_the_limit_is_length(florence: Florence2Backend) -> None:
    gens = florence.generate([Prompted(image=img, params=GenerationParams(max_new_tokens=3, min_new_tokens=3))
                              for img in images()[:3]])
    assert [(g.output_tokens, g.finish_reason) for g in gens] == [(3, "length")] * 3


@pytest.mark.parametrize("task", ["<OCR_WITH_REGION>", "<VQA>", "caption"])
def test_unsupported_task_fails_before_model_work(
    florence: Florence2Backend, monkeypatch: pytest.MonkeyPatch, task: str
) -> None:
    def boom(*_: Any) -> None:
        raise AssertionError("model work started")

    monkeypatch.setattr(florence, "preprocess", boom)
    with pytest.raises(CapabilityError) as info:
        florence.generate([Prompted(image=images()[0]), Prompted(image=images()[1], task=task)])
    assert info.value.code == "unsupported_request"
    assert "<OD>" in str(info.value)


def test_free_text_prompt_is_refused(florence: Florence2Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(florence, "preprocess", lambda *_: pytest.fail("model work started"))
    with pytest.raises(CapabilityError) as info:
        florence.generate([Prompted(image=images()[0], prompt="What is in this picture?")])
    assert "free-text prompt" in str(info.value)


def test_remote_code_layout_is_refused_with_the_native_name(tmp_path: Path) -> None:
    remote = {"AutoConfig": "configuration_florence2.Florence2Config"}
    config = {"model_type": "florence2", "auto_map": remote}
    (tmp_path / "config.json").write_text(json.dumps(config))
    backend = registry.create_backend(ModelSettings(name=str(tmp_path), device="cpu"))
    with pytest.raises(ConfigError) as info:
        backend.load()
    assert "florence-community/Florence-2-base" in str(info.value)


def test_missing_directory_is_model_not_found(tmp_path: Path) -> None:
    settings = ModelSettings(name=str(tmp_path / "nope"), backend="florence2", device="cpu")
    backend = registry.create_backend(settings)
    with pytest.raises(ModelNotFound):
        backend.load()
