"""The batch-first Backend interface every model family implements.

A backend turns N prompted images into N generations, in order. It is split in three
stages so the engine can overlap CPU work with device work:

    preprocess(items) -> batch      CPU: processor, tokenisation (thread pool)
    forward(batch)    -> raw         device: model.generate
    postprocess(batch, raw) -> list[Generation]   CPU: decoding, task parsing

``generate`` runs the three in a row and fills the timings; single-image calls are a batch of one.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from descry.errors import CapabilityError
from descry.schemas import GenerationParams

DEFAULT_PARAMS = GenerationParams(max_new_tokens=64, temperature=0.0, top_p=1.0, num_beams=1, repetition_penalty=1.0)


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do; checked before work is queued."""

    instruct: bool = False
    prompt: bool = True
    tasks: frozenset[str] = frozenset()
    batching: bool = True
    structured_output: bool = False
    default_task: str | None = None


@dataclass
class Prompted:
    """One image with the text and parameters to generate from it."""

    image: Image.Image
    prompt: str | None = None
    task: str | None = None
    params: GenerationParams = field(default_factory=GenerationParams)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Generation:
    """What the model said about one image."""

    text: str
    prompt_tokens: int = 0
    output_tokens: int = 0
    finish_reason: str = "stop"
    structured: dict[str, Any] | None = None
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelSpec:
    """A resolved model: where its files are and how to load and prompt it."""

    model_id: str
    backend: str
    device: str = "auto"
    dtype: str = "auto"
    quantization: str = "none"
    compile: bool = False
    trust_remote_code: bool = False
    revision: str | None = None
    default_prompt: str | None = None
    detailed_prompt: str | None = None
    default_task: str | None = None
    detailed_task: str | None = None
    params: GenerationParams = DEFAULT_PARAMS
    options: dict[str, Any] = field(default_factory=dict)


class Backend(ABC):
    """A model family. Subclasses set ``name`` and ``capabilities`` and implement the stages."""

    name: str = "backend"
    capabilities: Capabilities = Capabilities()

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.loaded = False
        self.device = "cpu"

    @property
    def model_name(self) -> str:
        return self.spec.model_id

    @abstractmethod
    def load(self) -> None:
        """Load weights and processors; raise ModelNotFound with a fix when they are missing."""

    def close(self) -> None:
        """Release the model."""
        self.loaded = False

    @abstractmethod
    def preprocess(self, items: Sequence[Prompted]) -> Any:
        """Build the model inputs for a batch (CPU)."""

    @abstractmethod
    def forward(self, batch: Any) -> Any:
        """Run the model on a prepared batch (device)."""

    @abstractmethod
    def postprocess(self, batch: Any, raw: Any) -> list[Generation]:
        """Turn raw outputs into generations, in input order."""

    def check(self, item: Prompted) -> None:
        """Fail fast when a request asks for something this backend cannot do."""
        caps = self.capabilities
        if item.task and item.task not in caps.tasks:
            supported = ", ".join(sorted(caps.tasks)) or "none"
            raise CapabilityError(
                f"model {self.model_name} does not support task {item.task!r}",
                hint=f"supported tasks: {supported}",
            )
        if item.prompt and not caps.prompt:
            raise CapabilityError(
                f"model {self.model_name} does not take a free-text prompt",
                hint="leave the prompt out, or pick an instruction-following model (descry models)",
            )

    def shape_key(self, item: Prompted) -> Hashable:
        """Items with different keys produce different input lengths; batching keeps them apart."""
        return None

    def params_for(self, item: Prompted) -> GenerationParams:
        """The item's parameters over the model's defaults."""
        return item.params.merged_over(self.spec.params)

    def generate(self, items: Sequence[Prompted]) -> list[Generation]:
        """Caption a batch; returns one generation per item, in order."""
        if not items:
            return []
        for item in items:
            self.check(item)
        t0 = time.perf_counter()
        batch = self.preprocess(items)
        t1 = time.perf_counter()
        raw = self.forward(batch)
        t2 = time.perf_counter()
        out = self.postprocess(batch, raw)
        t3 = time.perf_counter()
        return stamp(out, len(items), self.name, preprocess_s=t1 - t0, generate_s=t2 - t1, postprocess_s=t3 - t2)


def stamp(out: list[Generation], expected: int, backend: str, **stages: float) -> list[Generation]:
    """Check a batch's output count and record the stage timings on each generation."""
    if len(out) != expected:
        raise RuntimeError(f"{backend} returned {len(out)} generations for {expected} items")
    per = {**stages, "batch_size": float(expected)}
    for gen in out:
        gen.timings = {**per, **gen.timings}
    return out
