"""Token-for-token parity: descry's batched greedy output equals each family's model-card code, image by image.

Every family's tiny checkpoint is loaded through descry's normal path (the registry, no torchvision) and
captions a batch of images of different sizes with two prompts (one chosen by the user, one descry's
default) in ONE generate call, so the batch is padded. The reference runs the model card's code on each
image alone. The weights are scaled so the output follows the image and the prompt; the test checks that
it does, or equality would prove nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from descry.backends import registry
from descry.backends.base import Prompted
from descry.backends.hf_vlm import HFVisionBackend
from descry.config import ModelSettings
from descry.schemas import GenerationParams
from tests.parity.conftest import FAMILIES, PREFIX_FAMILIES, Reference, textured, until_eos

pytestmark = pytest.mark.slow

USER_PROMPT = "Write a short caption. List the objects you can see."
SIZES = [(64, 48), (40, 96), (90, 90)]
MAX_NEW_TOKENS = 16


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_batched_output_equals_the_model_card_code(family: str, checkpoint: Callable[[str], Path]) -> None:
    path = checkpoint(family)
    backend = registry.create_backend(ModelSettings(name=str(path), device="cpu"))
    assert isinstance(backend, HFVisionBackend)
    backend.load()
    try:
        images = [textured(size, seed) for seed, size in enumerate(SIZES)]
        prompts: list[str | None] = [USER_PROMPT, None, USER_PROMPT]
        params = GenerationParams(max_new_tokens=MAX_NEW_TOKENS)
        items = [Prompted(image=img, prompt=p, params=params) for img, p in zip(images, prompts, strict=True)]
        batch = backend.preprocess(items)
        assert len(set(batch.prompt_tokens)) > 1, "the batch must need padding"
        raw = backend.forward(batch)
        reference = Reference(path)
        eos = reference.eos()
        ours = [until_eos(row, eos) for row in raw[:, batch.input_length :].tolist()]
        # descry's default prompt is PaliGemma's `caption en` task
        default = "caption en" if reference.model_type in PREFIX_FAMILIES else backend.spec.default_prompt or ""
        theirs = [reference.tokens(img, p or default, MAX_NEW_TOKENS) for img, p in zip(images, prompts, strict=True)]
        assert ours == theirs
        assert theirs[0] != theirs[2], "the output must depend on the image"
        assert theirs[0] != reference.tokens(images[0], default, MAX_NEW_TOKENS), "... and on the prompt"
        assert len(backend.generate(items)) == 3
    finally:
        backend.close()
