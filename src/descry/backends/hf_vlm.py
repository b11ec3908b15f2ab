"""Any transformers image-text-to-text model through its chat template, or PaliGemma through its task prefix.

Checked token for token against each family's model-card code in tests/parity (Qwen2/2.5/3-VL, Gemma 3/4,
Llama 3.2 Vision, InternVL, SmolVLM/SmolVLM2, LLaVA 1.5/NeXT/OneVision, Aya Vision, Mistral 3, PaliGemma 2).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from descry.backends import hf_common, prefix_prompt
from descry.backends.base import Capabilities, Generation, Prompted
from descry.backends.hf_presets import HF_VLM_PRESETS
from descry.backends.hf_processors import (
    PIXTRAL_FAMILIES,
    VIDEO_PROCESSORS,
    image_only_processor_class,
    pixtral_processor_class,
)
from descry.backends.prefix_prompt import chat_messages, chat_text, prefix_text
from descry.errors import ConfigError
from descry.schemas import GenerationParams

FALLBACK_PROMPT = "Describe this image."

PIXEL_OPTIONS = ("min_pixels", "max_pixels")

__all__ = ["HFVisionBackend", "HFVisionOptions", "VLMBatch", "chat_messages", "image_only_processor_class"]


@dataclass
class VLMBatch:
    """Model inputs for one batch and what postprocess needs to read the outputs."""

    inputs: Any
    params: GenerationParams
    input_length: int
    prompt_tokens: list[int]


class HFVisionOptions(hf_common.TransformersOptions):
    """Image-text-to-text options: the pixel budget of processors that resize by area (Qwen2/2.5-VL)."""

    min_pixels: int | None = Field(None, ge=1)
    max_pixels: int | None = Field(None, ge=1)


class HFVisionBackend(hf_common.TransformersBackend):
    """Image-text-to-text models loaded with AutoModelForImageTextToText and prompted via their chat template."""

    name = "hf_vlm"
    capabilities = Capabilities(instruct=True, prompt=True, batching=True)
    presets = HF_VLM_PRESETS
    model_types = frozenset(
        {
            *VIDEO_PROCESSORS,
            *prefix_prompt.PREFIX_FAMILIES,
            *("idefics3", "llava", "llava_next", "gemma3", "gemma4", "mllama", "aya_vision", "mistral3"),
        }
    )
    Options = HFVisionOptions
    model_type = ""

    def load(self) -> None:
        transformers = hf_common.require("transformers")
        hf_common.model_source(self.spec)  # before torch loads: a model that cannot be had fails at once
        where = hf_common.placement(self.spec)
        self.device, self.dtype = where.device, where.dtype
        try:
            config = hf_common.load_pretrained(transformers.AutoConfig.from_pretrained, self.spec)
        except (ValueError, KeyError) as exc:
            raise self._unsupported(exc, transformers.__version__) from exc
        self.model_type = str(config.model_type)
        self.processor = self._load_processor(transformers, self.model_type)
        self.model = hf_common.finish_loading(self._load_model(transformers, where), self.spec, where)
        self.loaded = True

    def _load_processor(self, transformers: Any, model_type: str) -> Any:
        if model_type in VIDEO_PROCESSORS:
            pixels = {k: int(self.spec.options[k]) for k in PIXEL_OPTIONS if self.spec.options.get(k)}
            processor_cls = image_only_processor_class(model_type)
            processor = hf_common.load_pretrained(processor_cls.from_pretrained, self.spec)
            if pixels:
                processor.image_processor = type(processor.image_processor)(
                    **{**processor.image_processor.to_dict(), **pixels}
                )
        elif model_type in PIXTRAL_FAMILIES:
            processor = hf_common.load_pretrained(pixtral_processor_class().from_pretrained, self.spec)
        else:
            processor = hf_common.load_pretrained(transformers.AutoProcessor.from_pretrained, self.spec)
        if getattr(processor, "image_processor", None) is None or getattr(processor, "tokenizer", None) is None:
            raise ConfigError(
                f"model {self.spec.model_id} has no image processor, so it cannot read images",
                hint="pick an image-text-to-text model (descry models lists presets)",
            )
        if not processor.chat_template and not prefix_prompt.uses_prefix(model_type):
            raise ConfigError(
                f"model {self.spec.model_id} has no chat template",
                hint="use an instruction-tuned checkpoint that ships a chat template, or --backend blip/florence2",
            )
        processor.tokenizer.padding_side = "left"
        return processor

    def _load_model(self, transformers: Any, where: hf_common.Placement) -> Any:
        kwargs = where.load_kwargs()
        loader = transformers.AutoModelForImageTextToText.from_pretrained
        try:
            attention = hf_common.attention_for(self.device, self.spec.options)
            return hf_common.load_pretrained(loader, self.spec, attn_implementation=attention, **kwargs)
        except ValueError as exc:
            if "sdpa" in str(exc).lower() or "attention" in str(exc).lower():
                return self._load_plain(loader, kwargs)
            raise self._unsupported(exc) from exc

    def _load_plain(self, loader: Any, kwargs: dict[str, Any]) -> Any:
        try:
            return hf_common.load_pretrained(loader, self.spec, **kwargs)
        except ValueError as exc:
            raise self._unsupported(exc) from exc

    def _unsupported(self, exc: Exception, version: str | None = None) -> ConfigError:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if version is not None:
            return ConfigError(
                f"model {self.spec.model_id}: transformers {version} cannot load this model: {first}",
                hint="upgrade transformers (pip install -U transformers) or pick a family descry supports "
                "(docs/models.md)",
            )
        return ConfigError(
            f"model {self.spec.model_id} is not an image-text-to-text model: {first}",
            hint="pick a vision-language model (descry models lists presets) or set --backend for its family",
        )

    def shape_key(self, item: Prompted) -> Hashable:
        """Dynamic-resolution models turn bigger images into more tokens: batch similar areas and aspects."""
        width, height = item.image.size
        area_bucket = round(math.log2(max(1, width * height)) * 2)
        aspect = "landscape" if width > height * 1.2 else "portrait" if height > width * 1.2 else "square"
        return area_bucket, aspect

    def preprocess(self, items: Sequence[Prompted]) -> VLMBatch:
        params = hf_common.batch_params([self.params_for(item) for item in items])
        images = [[item.image.convert("RGB")] for item in items]
        if prefix_prompt.uses_prefix(self.model_type):
            texts = [prefix_text(self.processor, item.prompt or self.spec.default_prompt) for item in items]
            inputs = self.processor(text=texts, images=images, padding=True, padding_side="left", return_tensors="pt")
        else:
            prompts = [item.prompt or self.spec.default_prompt or FALLBACK_PROMPT for item in items]
            texts = [chat_text(self.processor, prompt) for prompt in prompts]
            inputs = self.processor(
                text=texts,
                images=images,
                padding=True,
                padding_side="left",
                add_special_tokens=prefix_prompt.adds_special_tokens(self.processor, texts[0]),
                return_tensors="pt",
            )
        mask = inputs["attention_mask"]
        return VLMBatch(
            inputs=inputs,
            params=params,
            input_length=int(inputs["input_ids"].shape[1]),
            prompt_tokens=[int(n) for n in mask.sum(dim=1).tolist()],
        )

    def forward(self, batch: VLMBatch) -> Any:
        torch = hf_common.require("torch")
        inputs = batch.inputs.to(self.device)
        if "pixel_values" in inputs and inputs["pixel_values"].is_floating_point():
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        kwargs = hf_common.generate_kwargs(batch.params)
        pad = self._pad_token_id()
        if pad is not None:
            kwargs["pad_token_id"] = pad

        def run() -> Any:
            with torch.inference_mode():
                return self.model.generate(**inputs, **kwargs)

        return hf_common.run_guarded(run)

    def postprocess(self, batch: VLMBatch, raw: Any) -> list[Generation]:
        new_tokens = raw[:, batch.input_length :].tolist()
        eos = self._eos_token_ids()
        limit = batch.params.max_new_tokens
        texts = self.processor.batch_decode(
            raw[:, batch.input_length :], skip_special_tokens=True, clean_up_tokenization_spaces=False
        )
        out = []
        for text, tokens, prompt_tokens in zip(texts, new_tokens, batch.prompt_tokens, strict=True):
            stop = next((i for i, tok in enumerate(tokens) if tok in eos), None)
            count = len(tokens) if stop is None else stop + 1
            reason = "length" if stop is None and limit is not None and count >= limit else "stop"
            out.append(
                Generation(text=text.strip(), prompt_tokens=prompt_tokens, output_tokens=count, finish_reason=reason)
            )
        return out

    def _eos_token_ids(self) -> set[int]:
        found: set[int] = set()
        configured = getattr(self.model.generation_config, "eos_token_id", None)
        if isinstance(configured, int):
            found.add(configured)
        elif configured:
            found.update(int(t) for t in configured)
        if self.processor.tokenizer.eos_token_id is not None:
            found.add(int(self.processor.tokenizer.eos_token_id))
        return found

    def _pad_token_id(self) -> int | None:
        pad = getattr(self.model.generation_config, "pad_token_id", None)
        if pad is None:
            pad = self.processor.tokenizer.pad_token_id
        if pad is None:
            pad = next(iter(sorted(self._eos_token_ids())), None)
        return pad
