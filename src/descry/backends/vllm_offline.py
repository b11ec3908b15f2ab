"""vLLM in-process (``vllm.LLM``) for offline batches on a GPU: continuous batching without a server.

Select it with ``--backend vllm``; the model id or directory is whatever vLLM can serve. Images go
in as data URLs through ``LLM.chat``, which applies the model's own chat template.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from descry.backends import hf_common
from descry.backends.base import Backend, BackendOptions, Capabilities, Generation, Prompted, parse_options
from descry.backends.openai_compat import FALLBACK_PROMPT, image_data_url, vision_messages
from descry.schemas import GenerationParams

# what a checkpoint's generation_config.json may set and descry leaves to it unless asked
CHECKPOINT_DEFAULTS = ("repetition_penalty", "top_p", "top_k", "min_p")


@dataclass
class VLLMBatch:
    conversations: list[list[dict[str, Any]]]
    sampling: list[Any]


class VLLMOptions(BackendOptions):
    """Keyword arguments for ``vllm.LLM`` (e.g. gpu_memory_utilization, max_model_len), over descry's."""

    vllm_args: dict[str, Any] = Field(default_factory=dict)


class VLLMBackend(Backend):
    """A vision-language model run by vLLM inside this process."""

    name = "vllm"
    capabilities = Capabilities(instruct=True, prompt=True, batching=True)
    Options = VLLMOptions
    llm: Any = None

    def load(self) -> None:
        vllm = hf_common.require("vllm", "vllm")
        args: dict[str, Any] = {
            "model": self.spec.model_id,
            "revision": self.spec.revision,
            "trust_remote_code": self.spec.trust_remote_code,
            "dtype": self.spec.dtype,
            "limit_mm_per_prompt": {"image": 1},
            **parse_options(VLLMOptions, self.name, self.spec.options).vllm_args,
        }
        if self.spec.quantization != "none":
            args.setdefault("quantization", "bitsandbytes")
        self.llm = vllm.LLM(**args)
        self.device = "cuda"
        self.loaded = True

    def close(self) -> None:
        self.llm = None
        hf_common.release("cuda")
        super().close()

    def checkpoint_sampling(self) -> dict[str, Any]:
        """The checkpoint's own defaults (generation_config.json, as vLLM reads it) for what nobody set."""
        defaults = self.llm.get_default_sampling_params()
        values = {name: getattr(defaults, name, None) for name in CHECKPOINT_DEFAULTS}
        return {name: value for name, value in values.items() if value is not None}

    def sampling(self, params: GenerationParams) -> Any:
        """vLLM's SamplingParams for descry's generation parameters (beam search is not offered here)."""
        vllm = hf_common.require("vllm", "vllm")
        kwargs = self.checkpoint_sampling()
        kwargs.update(max_tokens=params.max_new_tokens, temperature=params.temperature or 0.0)
        for name in ("top_p", "repetition_penalty"):
            if getattr(params, name) is not None:
                kwargs[name] = getattr(params, name)
        if params.min_new_tokens:
            kwargs["min_tokens"] = params.min_new_tokens
        return vllm.SamplingParams(**kwargs)

    def preprocess(self, items: Sequence[Prompted]) -> VLLMBatch:
        conversations = [
            vision_messages(item.prompt or self.spec.default_prompt or FALLBACK_PROMPT, image_data_url(item.image))
            for item in items
        ]
        return VLLMBatch(conversations, [self.sampling(self.params_for(item)) for item in items])

    def forward(self, batch: VLLMBatch) -> Any:
        return hf_common.run_guarded(
            lambda: self.llm.chat(batch.conversations, sampling_params=batch.sampling, use_tqdm=False)
        )

    def postprocess(self, batch: VLLMBatch, raw: Any) -> list[Generation]:
        generations = []
        for output in raw:
            best = output.outputs[0]
            generations.append(
                Generation(
                    text=best.text.strip(),
                    prompt_tokens=len(output.prompt_token_ids or []),
                    output_tokens=len(best.token_ids),
                    finish_reason="length" if best.finish_reason == "length" else "stop",
                )
            )
        return generations
