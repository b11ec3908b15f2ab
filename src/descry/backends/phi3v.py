"""Phi-3.5-vision through its remote code (``trust_remote_code``), with ``num_crops`` HD cropping.

The remote code was written for transformers 4.x; ``phi3v_compat`` fits it to transformers 5
without touching transformers globally. The remote processor takes one prompt per call, so a
batch is processed item by item and left-padded here into one ``generate`` call per parameter set.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import Field

from descry.backends import hf_common, phi3v_compat
from descry.backends.base import Capabilities, Generation, ModelSpec, Preset, Prompted, chat_spec
from descry.errors import ConfigError
from descry.schemas import GenerationParams

PROMPT_TEMPLATE = "<|user|>\n<|image_1|>\n{text}<|end|>\n<|assistant|>\n"
FALLBACK_PROMPT = "Describe this image."
DEFAULT_NUM_CROPS = 4
MAX_NUM_CROPS = 16
# chat-format markers a user prompt must not smuggle in (<|image_2|>, <|end|>, <|assistant|>, ...)
CONTROL_TOKEN = re.compile(r"<\|[A-Za-z0-9_]+\|>")


@dataclass
class Phi3Group:
    """Items sharing one ``generate`` call: same generation parameters."""

    indices: list[int]
    params: GenerationParams
    inputs: dict[str, Any] = field(default_factory=dict)
    prompt_tokens: list[int] = field(default_factory=list)


@dataclass
class Phi3Batch:
    size: int
    groups: list[Phi3Group]


def build_prompt(text: str) -> str:
    """Phi-3.5-vision's single-image chat prompt around an instruction."""
    clean = CONTROL_TOKEN.sub("", text).strip() or FALLBACK_PROMPT
    return PROMPT_TEMPLATE.format(text=clean)


def num_crops_option(options: dict[str, Any]) -> int:
    """``num_crops`` from the model options (default 4), validated."""
    value = options.get("num_crops", DEFAULT_NUM_CROPS)
    try:
        crops = int(value)
    except (TypeError, ValueError):
        crops = 0
    if not 1 <= crops <= MAX_NUM_CROPS:
        raise ConfigError(
            f"num_crops must be a whole number from 1 to {MAX_NUM_CROPS}, got {value!r}",
            hint="use 4 for single images (the default) or 16 for fine detail (DESCRY_MODEL__NUM_CROPS)",
        )
    return crops


def phi3v_spec(model_id: str, backend: str = "phi3v") -> ModelSpec:
    """A Phi-3(.5)-vision model: its own remote code, chat prompts, four crops."""
    return replace(chat_spec(model_id, backend, num_crops=DEFAULT_NUM_CROPS), trust_remote_code=True)


class Phi3VisionOptions(hf_common.TransformersOptions):
    """Phi-3-vision's options: how many HD crops an image is cut into."""

    num_crops: int = Field(DEFAULT_NUM_CROPS, ge=1, le=MAX_NUM_CROPS)


class Phi3VisionBackend(hf_common.TransformersBackend):
    """microsoft/Phi-3.5-vision-instruct (and Phi-3-vision): the causal-LM class from its remote code."""

    name = "phi3v"
    capabilities = Capabilities(instruct=True, prompt=True, batching=True)
    presets = {
        "phi-3.5-vision": Preset(
            phi3v_spec("microsoft/Phi-3.5-vision-instruct"),
            "4.2B instruct, remote code",
            params_b=4.2,
            download_gb=8.3,
            good_at="small text, documents and charts (high-resolution crops)",
            cpu="slow",
            licence="mit",
            model_type="phi3_v",
        )
    }
    model_types = frozenset({"phi3_v"})
    Options = Phi3VisionOptions

    @classmethod
    def spec_for(cls, model_id: str, backend: str) -> ModelSpec:
        return phi3v_spec(model_id, backend)

    @classmethod
    def claims_name(cls, model_id: str) -> bool:
        lowered = model_id.lower()
        return "phi-3" in lowered and "vision" in lowered

    batcher: phi3v_compat.LegacyProcessor | None = None

    @property
    def num_crops(self) -> int:
        return num_crops_option(self.spec.options)

    def load(self) -> None:
        transformers = hf_common.require("transformers")
        if not self.spec.trust_remote_code:
            raise ConfigError(
                f"{self.model_name} runs its own model code from the model repository",
                hint="allow it with DESCRY_MODEL__TRUST_REMOTE_CODE=true (trust_remote_code in the model settings)",
            )
        hf_common.model_source(self.spec)  # before torch loads: a model that cannot be had fails at once
        crops = self.num_crops
        where = hf_common.placement(self.spec)
        self.device, self.dtype = where.device, where.dtype
        attention = hf_common.attention_for(self.device, self.spec.options, fallback="eager")
        # the published config pins flash_attention_2; this config override replaces it
        kwargs: dict[str, Any] = {**where.load_kwargs(), "_attn_implementation": attention}
        try:
            with phi3v_compat.legacy_transformers_api():
                config = hf_common.load_pretrained(transformers.AutoConfig.from_pretrained, self.spec)
                flash = attention == "flash_attention_2"
                model_class = phi3v_compat.remote_model_class(
                    config, self.spec.model_id, self.spec.revision, flash_attention=flash
                )
                model = hf_common.load_pretrained(model_class.from_pretrained, self.spec, **kwargs)
                processor = hf_common.load_pretrained(
                    transformers.AutoProcessor.from_pretrained, self.spec, num_crops=crops
                )
        except ImportError as exc:
            raise ConfigError(
                f"the remote code of {self.model_name} could not be imported: {exc}",
                hint="install the package it names with pip install -c constraints.txt <package>",
            ) from exc
        self.model = hf_common.finish_loading(phi3v_compat.adapt_model(model), self.spec, where)
        self.processor = processor
        self.batcher = phi3v_compat.LegacyProcessor(processor)
        self.loaded = True

    def close(self) -> None:
        self.batcher = None
        super().close()

    def prompt_for(self, item: Prompted) -> str:
        return build_prompt(item.prompt or self.spec.default_prompt or FALLBACK_PROMPT)

    def preprocess(self, items: Sequence[Prompted]) -> Phi3Batch:
        if self.batcher is None:
            raise RuntimeError("load() the phi3v backend before generating")
        groups: dict[GenerationParams, Phi3Group] = {}
        for index, item in enumerate(items):
            params = self.params_for(item)
            groups.setdefault(params, Phi3Group([], params)).indices.append(index)
        for group in groups.values():
            texts = [self.prompt_for(items[i]) for i in group.indices]
            images = [items[i].image.convert("RGB") for i in group.indices]
            group.inputs = self.batcher(texts, images, padding_side="left")
            group.prompt_tokens = [int(n) for n in group.inputs["attention_mask"].sum(dim=1).tolist()]
        return Phi3Batch(size=len(items), groups=list(groups.values()))

    def forward(self, batch: Phi3Batch) -> list[Any]:
        torch = hf_common.require("torch")
        outputs = []
        for group in batch.groups:
            inputs = {k: v.to(self.device) for k, v in group.inputs.items()}
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
            kwargs = {**hf_common.generate_kwargs(group.params), **self._special_tokens()}
            kwargs[phi3v_compat.generate_cache_kwarg()] = phi3v_compat.new_cache()

            def run(inputs: dict[str, Any] = inputs, kwargs: dict[str, Any] = kwargs) -> Any:
                with torch.inference_mode():
                    return self.model.generate(**inputs, **kwargs)

            outputs.append(hf_common.run_guarded(run).cpu())
        return outputs

    def _special_tokens(self) -> dict[str, Any]:
        config = self.model.generation_config
        extra: dict[str, Any] = {}
        if config.pad_token_id is None:
            extra["pad_token_id"] = self.batcher.pad_token_id if self.batcher else 0
        return extra

    def _eos_ids(self) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.processor.tokenizer.eos_token_id
        return {int(e) for e in (eos if isinstance(eos, list | tuple) else [eos]) if e is not None}

    def postprocess(self, batch: Phi3Batch, raw: list[Any]) -> list[Generation]:
        out: list[Generation | None] = [None] * batch.size
        eos = self._eos_ids()
        for group, sequences in zip(batch.groups, raw, strict=True):
            width = int(group.inputs["input_ids"].shape[1])
            for index, tokens, row in zip(group.indices, group.prompt_tokens, sequences.tolist(), strict=True):
                out[index] = self._generation(row[width:], tokens, group.params, eos)
        return [gen for gen in out if gen is not None]

    def _generation(self, new: list[int], prompt_tokens: int, params: GenerationParams, eos: set[int]) -> Generation:
        stop = next((i for i, tok in enumerate(new) if tok in eos), None)
        count = len(new) if stop is None else stop + 1
        text = self.processor.tokenizer.decode(new[: count if stop is None else stop], skip_special_tokens=True)
        limit = params.max_new_tokens
        reason = "length" if stop is None and limit is not None and count >= limit else "stop"
        return Generation(text=text.strip(), prompt_tokens=prompt_tokens, output_tokens=count, finish_reason=reason)
