"""Florence-2 (native transformers, ``florence-community/Florence-2-*``) driven by task prompts."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from descry.backends import hf_common
from descry.backends.base import DEFAULT_PARAMS, Capabilities, Generation, ModelSpec, Preset, Prompted
from descry.errors import CapabilityError, ConfigError
from descry.schemas import GenerationParams

CAPTION_TASKS = ("<CAPTION>", "<DETAILED_CAPTION>", "<MORE_DETAILED_CAPTION>")
TASKS = frozenset({*CAPTION_TASKS, "<OD>", "<OCR>"})
DEFAULT_TASK = "<CAPTION>"


@dataclass
class FlorenceGroup:
    """Items that share one ``generate`` call (same parameters; tasks may differ)."""

    indices: list[int]
    params: GenerationParams
    inputs: Any = None
    prompt_tokens: list[int] = field(default_factory=list)


@dataclass
class FlorenceBatch:
    """A prepared batch: per-item task and image size, and the groups to generate."""

    tasks: list[str]
    sizes: list[tuple[int, int]]
    groups: list[FlorenceGroup]


def florence_spec(model_id: str, backend: str = "florence2") -> ModelSpec:
    """A Florence-2 model: task tokens for brief and detailed captions, beam search."""
    return ModelSpec(
        model_id=model_id,
        backend=backend,
        default_task=DEFAULT_TASK,
        detailed_task="<MORE_DETAILED_CAPTION>",
        params=DEFAULT_PARAMS.model_copy(update={"max_new_tokens": 64, "num_beams": 3}),
    )


def _labels_text(labels: list[str]) -> str:
    """Detected labels as one line, each once, in order of first appearance."""
    return ", ".join(dict.fromkeys(label for label in labels if label))


class Florence2Backend(hf_common.TransformersBackend):
    """Florence2ForConditionalGeneration + Florence2Processor; takes task tokens, not free prompts."""

    name = "florence2"
    capabilities = Capabilities(
        instruct=False, prompt=False, tasks=TASKS, batching=True, default_task=DEFAULT_TASK
    )
    presets = {
        "florence-2-base": Preset(
            florence_spec("florence-community/Florence-2-base"),
            "0.23B, fast on CPU (default)",
            params_b=0.23,
            download_gb=0.5,
            good_at="one-line to paragraph captions, object detection, OCR",
            cpu="yes",
            licence="mit",
            model_type="florence2",
        ),
        "florence-2-large": Preset(
            florence_spec("florence-community/Florence-2-large"),
            "0.77B, better detail",
            params_b=0.77,
            download_gb=1.6,
            good_at="more detailed captions, object detection, OCR",
            cpu="yes",
            licence="mit",
            model_type="florence2",
        ),
    }
    model_types = frozenset({"florence2"})

    @classmethod
    def spec_for(cls, model_id: str, backend: str) -> ModelSpec:
        return florence_spec(model_id, backend)

    @classmethod
    def claims_name(cls, model_id: str) -> bool:
        return "florence" in model_id.lower()

    _markup: re.Pattern[str] | None = None

    def load(self) -> None:
        transformers = hf_common.require("transformers")
        hf_common.model_source(self.spec)  # before torch loads: a model that cannot be had fails at once
        self._check_native(transformers)
        where = hf_common.placement(self.spec)
        self.device, self.dtype = where.device, where.dtype
        self.processor = hf_common.load_processor(self.spec)
        loader = transformers.Florence2ForConditionalGeneration.from_pretrained
        model = hf_common.load_pretrained(loader, self.spec, **where.load_kwargs())
        self.model = hf_common.finish_loading(model, self.spec, where)
        self.loaded = True

    def _check_native(self, transformers: Any) -> None:
        """The original microsoft/Florence-2-* repos need remote code that transformers 5 replaced."""
        config, _ = hf_common.load_pretrained(transformers.PretrainedConfig.get_config_dict, self.spec)
        if "auto_map" in config:
            raise ConfigError(
                f"model {self.spec.model_id} is the remote-code Florence-2 layout, which descry does not run",
                hint=(
                    "use the native conversion: florence-community/Florence-2-base "
                    "or florence-community/Florence-2-large"
                ),
            )


    def task_for(self, item: Prompted) -> str:
        """The item's task, else the model's default task."""
        task = item.task or self.spec.default_task or DEFAULT_TASK
        if task not in TASKS:
            raise CapabilityError(
                f"model {self.model_name} does not support task {task!r}",
                hint=f"supported tasks: {', '.join(sorted(TASKS))}",
            )
        return task

    def preprocess(self, items: Sequence[Prompted]) -> FlorenceBatch:
        tasks = [self.task_for(item) for item in items]
        groups: dict[GenerationParams, FlorenceGroup] = {}
        for index, item in enumerate(items):
            params = self.params_for(item)
            groups.setdefault(params, FlorenceGroup([], params)).indices.append(index)
        images = [item.image.convert("RGB") for item in items]
        for group in groups.values():
            group.inputs = self.processor(
                text=[tasks[i] for i in group.indices],
                images=[images[i] for i in group.indices],
                padding="longest",
                return_tensors="pt",
            )
            group.prompt_tokens = [int(n) for n in group.inputs["attention_mask"].sum(dim=1).tolist()]
        sizes = [image.size for image in images]
        return FlorenceBatch(tasks=tasks, sizes=sizes, groups=list(groups.values()))

    def forward(self, batch: FlorenceBatch) -> list[Any]:
        torch = hf_common.require("torch")
        outputs = []
        for group in batch.groups:
            inputs = group.inputs.to(self.device)
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
            kwargs = hf_common.generate_kwargs(group.params)

            def run(inputs: Any = inputs, kwargs: dict[str, Any] = kwargs) -> Any:
                with torch.inference_mode():
                    return self.model.generate(**inputs, **kwargs)

            outputs.append(hf_common.run_guarded(run).cpu())
        return outputs

    def postprocess(self, batch: FlorenceBatch, raw: list[Any]) -> list[Generation]:
        out: list[Generation | None] = [None] * len(batch.tasks)
        for group, sequences in zip(batch.groups, raw, strict=True):
            rows = sequences.tolist()
            for index, row, prompt_tokens in zip(group.indices, rows, group.prompt_tokens, strict=True):
                gen = self._generation(row, batch.tasks[index], batch.sizes[index], group.params)
                gen.prompt_tokens = prompt_tokens
                out[index] = gen
        return [gen for gen in out if gen is not None]

    def _generation(
        self, row: list[int], task: str, size: tuple[int, int], params: GenerationParams
    ) -> Generation:
        generation_config = self.model.generation_config
        eos = generation_config.eos_token_id
        eos_ids = set(eos) if isinstance(eos, list) else {eos}
        new = row[1:]  # after the decoder start token
        stop = next((i for i, tok in enumerate(new) if tok in eos_ids), None)
        count = len(new) if stop is None else stop + 1
        limit = params.max_new_tokens
        at_limit = limit is not None and count >= limit
        forced_end = at_limit and getattr(generation_config, "forced_eos_token_id", None) is not None
        reason = "length" if (stop is None and at_limit) or forced_end else "stop"
        text = self.processor.tokenizer.decode(row[: 1 + count], skip_special_tokens=False)
        parsed = self.processor.post_process_generation(text, task=task, image_size=size)[task]
        if task == "<OD>":
            bboxes = [[float(v) for v in box] for box in parsed["bboxes"]]
            labels = [str(label) for label in parsed["labels"]]
            return Generation(
                text=_labels_text(labels),
                output_tokens=count,
                finish_reason=reason,
                structured={"bboxes": bboxes, "labels": labels},
            )
        return Generation(text=self._plain(str(parsed)), output_tokens=count, finish_reason=reason)

    def _plain(self, text: str) -> str:
        """Text answers without leftover markup tokens (location bins, task tags, padding)."""
        if self._markup is None:
            tokens = sorted(self.processor.tokenizer.all_special_tokens, key=len, reverse=True)
            self._markup = re.compile("|".join(re.escape(t) for t in tokens) or "(?!)")
        return " ".join(self._markup.sub(" ", text).split())
