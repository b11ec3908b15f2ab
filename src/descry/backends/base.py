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
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from PIL import Image
from pydantic import BaseModel, ConfigDict, ValidationError

from descry.errors import CapabilityError, ConfigError
from descry.schemas import GenerationParams

# greedy unless a temperature is asked for; what is left unset (top_p, beams, repetition penalty, eos ids)
# comes from the checkpoint's generation_config.json
DEFAULT_PARAMS = GenerationParams(max_new_tokens=64, temperature=0.0)
BRIEF = "Describe this image in one sentence."
DETAILED = "Describe this image in detail: the subjects, setting, colours, actions and any visible text."


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


class BackendOptions(BaseModel):
    """A backend's options (``ModelSpec.options``); subclasses add typed fields. Unknown names are refused."""

    model_config = ConfigDict(extra="forbid")


OptionsT = TypeVar("OptionsT", bound=BackendOptions)


CPU_LEVELS = ("yes", "slow", "no")


@dataclass(frozen=True)
class Preset:
    """A named, ready-made model: its spec and what ``descry models`` says about it.

    ``params_b`` is the parameter count in billions and ``download_gb`` the weights a pull fetches (GB,
    from the hub's file listing); ``cpu`` is one of CPU_LEVELS: ``yes`` (seconds per image on a laptop
    CPU), ``slow`` (runs, tens of seconds per image), ``no`` (a GPU is needed). ``model_type`` is the
    checkpoint's config.json ``model_type``, which a backend must accept; ``gated``: the hub asks for
    the licence to be accepted before the files can be downloaded.
    """

    spec: ModelSpec
    note: str = ""
    params_b: float = 0.0
    download_gb: float = 0.0
    good_at: str = ""
    cpu: str = "no"
    licence: str = ""
    gated: bool = False
    model_type: str = ""

    def __post_init__(self) -> None:
        if self.cpu not in CPU_LEVELS:
            raise ValueError(f"Preset.cpu must be one of {', '.join(CPU_LEVELS)}, got {self.cpu!r}")

    @property
    def size(self) -> str:
        """``2.2B, 4.4 GB``: the parameter count and the download, as far as they are known."""
        params = f"{self.params_b:g}B" if self.params_b else ""
        download = f"{self.download_gb:.1f} GB" if self.download_gb else ""
        return ", ".join(part for part in (params, download) if part)


def chat_spec(model_id: str, backend: str, **options: Any) -> ModelSpec:
    """An instruction-following model prompted with descry's brief and detailed prompts."""
    return ModelSpec(
        model_id=model_id,
        backend=backend,
        default_prompt=BRIEF,
        detailed_prompt=DETAILED,
        params=DEFAULT_PARAMS.model_copy(update={"max_new_tokens": 96}),
        options=dict(options),
    )


def options_error(backend: str, exc: ValidationError, known: Sequence[str]) -> ConfigError:
    """One ConfigError naming every unknown or ill-typed option of a backend, and the options it has."""
    errors = exc.errors()
    unknown = [repr(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden" and e["loc"]]
    bad = [f"option {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors if e["type"] != "extra_forbidden"]
    parts = [f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}"] if unknown else []
    return ConfigError(
        f"backend {backend}: {'; '.join(parts + bad)}",
        hint=f"backend {backend} takes: {', '.join(sorted(known)) or 'no options'} (set with DESCRY_MODEL__OPTIONS)",
    )


def parse_options(model: type[OptionsT], backend: str, options: Mapping[str, Any]) -> OptionsT:
    """Options as a backend's typed model; a ConfigError names any unknown or ill-typed one."""
    try:
        return model.model_validate(dict(options))
    except ValidationError as exc:
        raise options_error(backend, exc, list(model.model_fields)) from None


class Backend(ABC):
    """A model family. Subclasses set ``name`` and ``capabilities`` and implement the stages.

    A family also declares what the registry aggregates: ``presets`` (name -> Preset), the
    config.json ``model_types`` it serves, and its ``Options`` (pydantic, ``extra="forbid"``).
    """

    name: str = "backend"
    capabilities: Capabilities = Capabilities()
    presets: ClassVar[Mapping[str, Preset]] = {}
    model_types: ClassVar[frozenset[str]] = frozenset()
    Options: ClassVar[type[BackendOptions]] = BackendOptions

    @classmethod
    def spec_for(cls, model_id: str, backend: str) -> ModelSpec:
        """The spec of a model id or directory that is not a preset (defaults of the family)."""
        return chat_spec(model_id, backend)

    @classmethod
    def claims_name(cls, model_id: str) -> bool:
        """Whether a model id that is neither a preset nor a saved directory looks like this family."""
        return False

    @classmethod
    def check_options(cls, options: Mapping[str, Any], backend: str | None = None) -> dict[str, Any]:
        """The options this backend was given, validated and coerced (only those given)."""
        typed = parse_options(cls.Options, backend or cls.name, options)
        return typed.model_dump(exclude_unset=True)

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
