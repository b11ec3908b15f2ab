"""Request bodies of the OpenAI-, Ollama- and KoboldCpp-compatible routes, as those protocols define them.

Strict types (a number is not a string) and unknown fields ignored: clients send many fields
descry has no use for (``frequency_penalty``, ``keep_alive``, ``tools`` ...).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

STRICT = ConfigDict(strict=True, extra="ignore")
MAX_MESSAGES = 256
MAX_TEXT = 100_000  # characters in one message; images arrive separately


class ImageURL(BaseModel):
    model_config = STRICT

    url: str = Field(description="a data URL (data:image/png;base64,...) or an http(s) URL")
    detail: str | None = None


class ContentPart(BaseModel):
    """One part of a message: ``text``, or ``image_url`` (``input_image`` is a synonym)."""

    model_config = STRICT

    type: Literal["text", "image_url", "input_text", "input_image"]
    text: str | None = Field(None, max_length=MAX_TEXT)
    image_url: ImageURL | str | None = None


class ChatMessage(BaseModel):
    model_config = STRICT

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = Field(None, max_length=256)


class ResponseFormat(BaseModel):
    model_config = STRICT

    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None


class StreamOptions(BaseModel):
    model_config = STRICT

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """``POST /v1/chat/completions`` as OpenAI defines it (the fields descry uses; others are ignored)."""

    model_config = STRICT

    model: str = Field(max_length=512, description="the loaded model, a configured alias or descry-caption")
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, ge=0.0, le=1.0)
    stop: str | list[str] | None = Field(None, description="up to 4 sequences where the answer ends")
    seed: int | None = None
    n: int | None = Field(None, ge=1, le=128, description="only 1 is served")
    stream: bool = False
    stream_options: StreamOptions | None = None
    response_format: ResponseFormat | None = None

    @model_validator(mode="after")
    def _few_stops(self) -> ChatCompletionRequest:
        if isinstance(self.stop, list) and len(self.stop) > 4:
            raise ValueError("stop takes at most 4 sequences")
        return self


class InputPart(BaseModel):
    """One part of a Responses API message: ``input_text`` or ``input_image`` (a data URL or http(s) URL)."""

    model_config = STRICT

    type: Literal["input_text", "input_image", "text", "output_text"]
    text: str | None = Field(None, max_length=MAX_TEXT)
    image_url: str | None = None
    detail: str | None = None


class InputMessage(BaseModel):
    model_config = STRICT

    role: Literal["system", "developer", "user", "assistant"]
    type: Literal["message"] | None = None
    content: str | list[InputPart]


class TextFormat(BaseModel):
    model_config = STRICT

    type: Literal["text", "json_object", "json_schema"]
    name: str | None = Field(None, max_length=256)
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class TextOptions(BaseModel):
    model_config = STRICT

    format: TextFormat | None = None


class ResponsesRequest(BaseModel):
    """``POST /v1/responses``: OpenAI's Responses API as PhotoPrism's ``openai`` engine sends it."""

    model_config = STRICT

    model: str = Field(max_length=512, description="the loaded model, a configured alias or descry-caption")
    input: str | list[InputMessage] = Field(description="text, or messages with input_text and input_image parts")
    instructions: str | None = Field(None, max_length=MAX_TEXT, description="a system message")
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, ge=0.0, le=1.0)
    text: TextOptions | None = None
    stream: bool = Field(False, description="only false is served")


class OllamaOptions(BaseModel):
    """Ollama's ``options`` descry applies; the others (num_ctx, num_gpu ...) are accepted and ignored."""

    model_config = STRICT

    temperature: float | None = Field(None, ge=0.0, le=5.0)
    num_predict: int | None = Field(None, ge=-2, description="-1 or -2: the model's default")
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    stop: list[str] | None = Field(None, max_length=16)
    seed: int | None = None


OllamaFormat = Literal["", "json"] | dict[str, Any] | None


class OllamaMessage(BaseModel):
    model_config = STRICT

    role: Literal["system", "user", "assistant", "tool"]
    content: str = Field("", max_length=MAX_TEXT)
    images: list[str] | None = Field(None, description="base64-encoded images")


class OllamaBase(BaseModel):
    model_config = STRICT

    model: str = Field(max_length=512)
    stream: bool = Field(True, description="newline-delimited JSON chunks; false: one JSON answer")
    format: OllamaFormat = Field(None, description='"json" or a JSON schema')
    options: OllamaOptions | None = None


class OllamaChatRequest(OllamaBase):
    """``POST /api/chat`` as Ollama defines it."""

    messages: list[OllamaMessage] = Field(default_factory=list, max_length=MAX_MESSAGES)


class OllamaGenerateRequest(OllamaBase):
    """``POST /api/generate`` as Ollama defines it."""

    prompt: str = Field("", max_length=MAX_TEXT)
    system: str | None = Field(None, max_length=MAX_TEXT)
    images: list[str] | None = Field(None, description="base64-encoded images")


class OllamaShowRequest(BaseModel):
    """``POST /api/show``: ``model`` (older clients send ``name``)."""

    model_config = STRICT

    model: str | None = Field(None, max_length=512)
    name: str | None = Field(None, max_length=512)

    @model_validator(mode="after")
    def _named(self) -> OllamaShowRequest:
        if not (self.model or self.name):
            raise ValueError("give the model's name in model")
        return self


class KoboldGenerateRequest(BaseModel):
    """KoboldCpp's generate request (the fields taggui sends; others are ignored)."""

    model_config = STRICT

    prompt: str = Field("", max_length=MAX_TEXT)
    images: list[str] | None = Field(None, description="base64-encoded images (one per request)")
    model: str = Field("", max_length=512, description="empty: the loaded model")
    max_new_tokens: int | None = Field(None, ge=1)
    max_length: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=5.0)
    top_p: float | None = Field(None, ge=0.0, le=1.0)
    do_sample: bool | None = Field(None, description="false: greedy decoding")


COMPAT_BODIES: list[type[BaseModel]] = [
    ChatCompletionRequest,
    ResponsesRequest,
    OllamaChatRequest,
    OllamaGenerateRequest,
    OllamaShowRequest,
    KoboldGenerateRequest,
]
