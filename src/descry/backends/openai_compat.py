"""Any OpenAI-compatible server (vLLM, Ollama, SGLang, LM Studio, llama.cpp) as a descry backend.

Images travel as base64 data URLs; a batch's requests are sent concurrently (bounded by
``max_concurrency``) so the server's continuous batching stays fed. One item's remote failure
does not lose the others: it comes back as a Generation with ``finish_reason="error"``, empty
text and ``structured={"error": {"code", "message"}}``; only when every item of a batch failed
is the first error raised.

spec.options: base_url, api_key, request_timeout, max_retries, max_concurrency, extra_body (a dict
merged into every request). Per item, ``Prompted.options["response_format"]`` is passed through
(vLLM supports ``json_schema``); a JSON reply then lands in ``Generation.structured``.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from PIL import Image
from pydantic import Field

from descry.backends.base import Backend, BackendOptions, Capabilities, Generation, ModelSpec, Prompted, parse_options
from descry.errors import ConfigError, DescryError, ModelNotFound
from descry.openai_client import ChatClient, ChatResult

FALLBACK_PROMPT = "Describe this image."
JPEG_QUALITY = 90


def image_data_url(image: Image.Image) -> str:
    """The image as a base64 data URL: PNG when it has transparency, otherwise RGB JPEG."""
    buffer = io.BytesIO()
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image.convert("RGBA").save(buffer, format="PNG")
        mime = "image/png"
    else:
        image.convert("RGB").save(buffer, format="JPEG", quality=JPEG_QUALITY)
        mime = "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


def vision_messages(prompt: str, data_url: str) -> list[dict[str, Any]]:
    """One user turn: the instruction, then the image."""
    content = [{"type": "text", "text": prompt}, {"type": "image_url", "image_url": {"url": data_url}}]
    return [{"role": "user", "content": content}]


@dataclass
class ChatRequest:
    """Everything one item's chat completion needs."""

    messages: list[dict[str, Any]]
    max_tokens: int | None
    temperature: float | None
    top_p: float | None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def wants_json(self) -> bool:
        return "response_format" in self.extra


def served_match(model: str, served: list[str]) -> bool:
    """Whether the server serves ``model`` (Ollama lists ``name:latest`` for ``name``)."""
    return model in served or f"{model}:latest" in served


class OpenAICompatOptions(BackendOptions):
    """Where the server is and how to talk to it."""

    base_url: str | None = None
    api_key: str | None = None
    request_timeout: float = Field(120.0, gt=0)
    max_retries: int = Field(3, ge=0, le=10)
    max_concurrency: int = Field(16, ge=1, le=1024)
    extra_body: dict[str, Any] = Field(default_factory=dict, description="merged into every request")


class OpenAICompatBackend(Backend):
    """Caption through a remote OpenAI-compatible chat completions API."""

    name = "openai_compat"
    capabilities = Capabilities(instruct=True, prompt=True, batching=True, structured_output=True)
    Options = OpenAICompatOptions

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self.client: ChatClient | None = None
        self._pool: ThreadPoolExecutor | None = None
        self.served: list[str] = []

    @property
    def settings(self) -> OpenAICompatOptions:
        """The spec's options, typed."""
        return parse_options(OpenAICompatOptions, self.name, self.spec.options)

    @property
    def base_url(self) -> str | None:
        return self.settings.base_url or None

    @property
    def max_concurrency(self) -> int:
        return self.settings.max_concurrency

    def load(self) -> None:
        """Connect, and check that the server is up and serves the model."""
        if not self.base_url:
            raise ConfigError(
                f"the openai_compat backend needs the URL of the server that serves {self.spec.model_id}",
                hint="pass --base-url http://localhost:8000/v1 or set DESCRY_MODEL__BASE_URL",
            )
        options = self.settings
        client = ChatClient(
            self.base_url,
            options.api_key,
            timeout=options.request_timeout,
            max_retries=options.max_retries,
            max_connections=options.max_concurrency,
        )
        try:
            self.served = client.list_models()
            if not served_match(self.spec.model_id, self.served):
                raise ModelNotFound(
                    f"the server at {self.base_url} does not serve model {self.spec.model_id!r}; "
                    f"it serves: {', '.join(self.served) or 'nothing'}",
                    hint="pass one of those as --model, or start the server with this model "
                    f"(vLLM: `vllm serve {self.spec.model_id}`, Ollama: `ollama pull <model>`)",
                )
        except Exception:
            client.close()
            raise
        self.client = client
        self._pool = ThreadPoolExecutor(max_workers=self.max_concurrency, thread_name_prefix="descry-openai")
        self.device = "remote"
        self.loaded = True

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self.client is not None:
            self.client.close()
            self.client = None
        super().close()

    def preprocess(self, items: Sequence[Prompted]) -> list[ChatRequest]:
        base_extra = dict(self.settings.extra_body)
        return [self._request(item, base_extra) for item in items]

    def _request(self, item: Prompted, base_extra: dict[str, Any]) -> ChatRequest:
        params = self.params_for(item)
        extra = dict(base_extra)
        if params.min_new_tokens:
            extra["min_tokens"] = params.min_new_tokens
        if params.repetition_penalty is not None and params.repetition_penalty != 1.0:
            extra["repetition_penalty"] = params.repetition_penalty
        if item.options.get("response_format"):
            extra["response_format"] = item.options["response_format"]
        prompt = item.prompt or self.spec.default_prompt or FALLBACK_PROMPT
        return ChatRequest(
            messages=vision_messages(prompt, image_data_url(item.image)),
            max_tokens=params.max_new_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            extra=extra,
        )

    def forward(self, batch: list[ChatRequest]) -> list[ChatResult | DescryError]:
        """Send every request at once (bounded by max_concurrency); a failure stays with its item."""
        if self.client is None or self._pool is None:
            raise ConfigError(f"backend {self.name} was used before load()", hint="call load() first")
        futures = [self._pool.submit(self._send, self.client, request) for request in batch]
        return [future.result() for future in futures]

    def _send(self, client: ChatClient, request: ChatRequest) -> ChatResult | DescryError:
        try:
            return client.chat(
                self.spec.model_id,
                request.messages,
                max_tokens=request.max_tokens,
                temperature=request.temperature,
                top_p=request.top_p,
                extra=request.extra,
            )
        except DescryError as exc:
            return exc

    def postprocess(self, batch: list[ChatRequest], raw: list[ChatResult | DescryError]) -> list[Generation]:
        errors = [r for r in raw if isinstance(r, DescryError)]
        if raw and len(errors) == len(raw):
            raise errors[0]
        return [
            self._failed(r) if isinstance(r, DescryError) else self._generation(req, r)
            for req, r in zip(batch, raw, strict=True)
        ]

    @staticmethod
    def _failed(error: DescryError) -> Generation:
        return Generation(text="", finish_reason="error", structured={"error": error.to_dict()})

    @staticmethod
    def _generation(request: ChatRequest, result: ChatResult) -> Generation:
        structured = None
        if request.wants_json:
            try:
                parsed = json.loads(result.text)
            except ValueError:
                parsed = None
            structured = parsed if isinstance(parsed, dict) else None
        return Generation(
            text=result.text.strip(),
            prompt_tokens=result.prompt_tokens,
            output_tokens=result.completion_tokens,
            finish_reason=result.finish_reason,
            structured=structured,
            timings={"request_s": result.elapsed_s},
        )
