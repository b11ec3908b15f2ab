"""BLIP captioning: unconditional, or conditional on a text prefix such as "a photography of"."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from descry.backends import hf_common
from descry.backends.base import DEFAULT_PARAMS, Capabilities, Generation, ModelSpec, Preset, Prompted
from descry.schemas import GenerationParams


@dataclass
class BlipGroup:
    """Items that can share one ``generate`` call: same parameters and same prefix length."""

    indices: list[int]
    params: GenerationParams
    input_ids: list[list[int]] | None = None
    image_tokens: int = 0


@dataclass
class BlipBatch:
    """A prepared batch: pixel values for every item and the groups to generate them in."""

    size: int
    pixel_values: Any
    groups: list[BlipGroup] = field(default_factory=list)


def blip_spec(model_id: str, backend: str = "blip") -> ModelSpec:
    """A BLIP captioner: no instruction prompts, short captions."""
    return ModelSpec(
        model_id=model_id, backend=backend, params=DEFAULT_PARAMS.model_copy(update={"max_new_tokens": 40})
    )


def _unpadded(encoded: Any) -> list[list[int]]:
    """Each tokenised prefix without its padding."""
    rows = encoded["input_ids"].tolist()
    masks = encoded["attention_mask"].tolist()
    pairs = zip(rows, masks, strict=True)
    return [[tok for tok, keep in zip(row, mask, strict=True) if keep] for row, mask in pairs]


class BlipBackend(hf_common.TransformersBackend):
    """BlipForConditionalGeneration; a prompt is a caption prefix, not an instruction."""

    name = "blip"
    capabilities = Capabilities(instruct=False, prompt=True, tasks=frozenset(), batching=True)
    presets = {
        "blip-base": Preset(
            blip_spec("Salesforce/blip-image-captioning-base"),
            "0.25B, short captions, fastest",
            params_b=0.25,
            download_gb=1.0,
            good_at="short captions, the fastest; a prompt is a caption prefix",
            cpu="yes",
            licence="bsd-3-clause",
            model_type="blip",
        ),
        "blip-large": Preset(
            blip_spec("Salesforce/blip-image-captioning-large"),
            "0.47B, short captions",
            params_b=0.47,
            download_gb=1.9,
            good_at="short captions, a little more detail than blip-base",
            cpu="yes",
            licence="bsd-3-clause",
            model_type="blip",
        ),
    }
    model_types = frozenset({"blip"})

    @classmethod
    def spec_for(cls, model_id: str, backend: str) -> ModelSpec:
        return blip_spec(model_id, backend)

    @classmethod
    def claims_name(cls, model_id: str) -> bool:
        lowered = model_id.lower()
        return "blip" in lowered and "blip2" not in lowered


    def load(self) -> None:
        transformers = hf_common.require("transformers")
        hf_common.model_source(self.spec)  # before torch loads: a model that cannot be had fails at once
        where = hf_common.placement(self.spec)
        self.device, self.dtype = where.device, where.dtype
        self.processor = hf_common.load_processor(self.spec)
        loader = transformers.BlipForConditionalGeneration.from_pretrained
        model = hf_common.load_pretrained(loader, self.spec, **where.load_kwargs())
        self.model = hf_common.finish_loading(model, self.spec, where)
        self.loaded = True


    def prefix_for(self, item: Prompted) -> str | None:
        """The caption prefix for an item: its prompt, else the configured default, else none."""
        text = (item.prompt or self.spec.default_prompt or "").strip()
        return text or None

    def preprocess(self, items: Sequence[Prompted]) -> BlipBatch:
        images = [item.image.convert("RGB") for item in items]
        prefixes = [self.prefix_for(item) for item in items]
        distinct = sorted({p for p in prefixes if p is not None})
        encoded = self.processor(images=images, text=distinct or None, padding=True, return_tensors="pt")
        ids = dict(zip(distinct, _unpadded(encoded) if distinct else [], strict=True))
        pixel_values = encoded["pixel_values"]
        height, width = pixel_values.shape[-2:]
        patch = self.model.config.vision_config.patch_size
        image_tokens = (height // patch) * (width // patch) + 1
        groups: dict[tuple[GenerationParams, int], BlipGroup] = {}
        for index, (item, prefix) in enumerate(zip(items, prefixes, strict=True)):
            params = self.params_for(item)
            tokens = ids[prefix] if prefix is not None else None
            key = (params, len(tokens) if tokens else 0)
            group = groups.setdefault(key, BlipGroup([], params, [] if tokens else None, image_tokens))
            group.indices.append(index)
            if tokens and group.input_ids is not None:
                group.input_ids.append(tokens)
        return BlipBatch(size=len(items), pixel_values=pixel_values, groups=list(groups.values()))

    def forward(self, batch: BlipBatch) -> list[Any]:
        torch = hf_common.require("torch")
        pixels = batch.pixel_values.to(self.device, self.dtype)
        outputs = []
        for group in batch.groups:
            kwargs = hf_common.generate_kwargs(group.params)
            inputs: dict[str, Any] = {"pixel_values": pixels[group.indices]}
            if group.input_ids is not None:
                input_ids = torch.tensor(group.input_ids, dtype=torch.long, device=self.device)
                inputs.update(input_ids=input_ids, attention_mask=torch.ones_like(input_ids))

            def run(inputs: dict[str, Any] = inputs, kwargs: dict[str, Any] = kwargs) -> Any:
                with torch.inference_mode():
                    return self.model.generate(**inputs, **kwargs)

            outputs.append(hf_common.run_guarded(run).cpu())
        return outputs

    def postprocess(self, batch: BlipBatch, raw: list[Any]) -> list[Generation]:
        out: list[Generation | None] = [None] * batch.size
        for group, sequences in zip(batch.groups, raw, strict=True):
            # BLIP's generate swaps [CLS] for its bos token and drops the trailing [SEP]
            prompt_len = len(group.input_ids[0]) - 1 if group.input_ids else 1
            for index, row in zip(group.indices, sequences.tolist(), strict=True):
                out[index] = self._generation(row, prompt_len, group)
        return [gen for gen in out if gen is not None]

    def _generation(self, row: list[int], prompt_len: int, group: BlipGroup) -> Generation:
        text_config = self.model.config.text_config
        new = row[prompt_len:]
        stop = next((i for i, tok in enumerate(new) if tok == text_config.sep_token_id), None)
        count = len(new) if stop is None else stop + 1
        limit = group.params.max_new_tokens
        reason = "length" if stop is None and limit is not None and count >= limit else "stop"
        return Generation(
            text=self._caption(row[:prompt_len], new[:count]),
            prompt_tokens=group.image_tokens + prompt_len,
            output_tokens=count,
            finish_reason=reason,
        )

    def _caption(self, prompt: list[int], new: list[int]) -> str:
        """The generated caption without the prefix, even when the decoded text echoes it."""
        decode = self.processor.tokenizer.decode
        prefix = decode(prompt, skip_special_tokens=True).strip()
        full = decode(prompt + new, skip_special_tokens=True).strip()
        if prefix and full.lower().startswith(prefix.lower()):
            return full[len(prefix) :].strip()
        text: str = decode(new, skip_special_tokens=True).strip()
        return text
