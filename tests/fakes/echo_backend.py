"""A scripted in-process backend for engine tests: answers from the image, fails on cue."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from descry.backends.base import Backend, Capabilities, Generation, ModelSpec, Prompted
from descry.errors import OutOfMemory


class EchoBackend(Backend):
    """Captions an image with its size; width 13 fails; batches above oom_above run out of memory."""

    name = "echo"
    capabilities = Capabilities(instruct=True, prompt=True, tasks=frozenset({"<CAPTION>"}))

    def __init__(self, spec: ModelSpec | None = None, *, delay: float = 0.0, oom_above: int | None = None) -> None:
        super().__init__(spec or ModelSpec(model_id="echo", backend="echo"))
        self.delay = delay
        self.oom_above = oom_above
        self.batches: list[int] = []

    def load(self) -> None:
        self.loaded = True

    def preprocess(self, items: Sequence[Prompted]) -> Any:
        return list(items)

    def forward(self, batch: Any) -> Any:
        if self.oom_above is not None and len(batch) > self.oom_above:
            raise OutOfMemory("simulated out of memory")
        if any(item.image.width == 13 for item in batch):
            raise ValueError("simulated model failure")
        self.batches.append(len(batch))
        time.sleep(self.delay)
        return [f"{item.image.width}x{item.image.height} {item.prompt or ''}".strip() for item in batch]

    def postprocess(self, batch: Any, raw: Any) -> list[Generation]:
        return [Generation(text=text, output_tokens=len(text.split())) for text in raw]
