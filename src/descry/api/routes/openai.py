"""The OpenAI-compatible routes: ``POST /v1/chat/completions`` and ``POST /v1/responses`` (the Responses
API as PhotoPrism's ``openai`` engine uses it, without streaming); ``GET /v1/models`` is the v1 route's,
which answers OpenAI's ``object``/``data`` list too.

Messages with string or content-part content (``text``, ``image_url`` as a data URL or an http(s) URL
read through the SSRF guard), one image per request, through the batcher; errors in OpenAI's shape
(``api.errors``). ``stream`` sends server-sent events: the answer in one content chunk, then the
finish reason (and usage when ``stream_options.include_usage``), then ``data: [DONE]``.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from descry.api.chat import Answer, Ask, answer, params_for, read_body
from descry.api.compat_bodies import ChatCompletionRequest, ContentPart, ImageURL, InputMessage, ResponsesRequest
from descry.api.deps import get_service, get_settings
from descry.api.service import CaptionService
from descry.config import Settings
from descry.errors import InputError

router = APIRouter(prefix="/v1", tags=["openai"])

Service = Annotated[CaptionService, Depends(get_service)]
Config = Annotated[Settings, Depends(get_settings)]
SSE = "text/event-stream"


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    refusal: str | None = None


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: str
    logprobs: dict[str, Any] | None = None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    """OpenAI's chat completion; ``tags`` (descry's) is set when the answer is descry's checked caption."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    system_fingerprint: str | None = None
    tags: list[str] | None = None


def json_body(schema: str) -> dict[str, Any]:
    """``openapi_extra`` for a JSON body parsed by hand (``api.chat.read_body``)."""
    ref = {"$ref": f"#/components/schemas/{schema}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


STREAMED = {200: {"content": {SSE: {"schema": {"type": "string", "description": "server-sent events"}}}}}


def _part_image(part: ContentPart) -> str:
    value = part.image_url.url if isinstance(part.image_url, ImageURL) else part.image_url
    if not value:
        raise InputError("an image_url part needs a url", hint='{"type": "image_url", "image_url": {"url": "..."}}')
    return value


def _content(content: str | list[ContentPart] | None) -> tuple[str, list[str]]:
    if content is None or isinstance(content, str):
        return content or "", []
    texts = [part.text or "" for part in content if part.type in ("text", "input_text")]
    images = [_part_image(part) for part in content if part.type in ("image_url", "input_image")]
    return "\n".join(text for text in texts if text), images


def to_ask(body: ChatCompletionRequest) -> Ask:
    """The request in descry's terms; ``n`` other than 1 is refused."""
    if body.n not in (None, 1):
        raise InputError(f"n={body.n}: descry answers with one choice", hint="leave n out or send n=1")
    stops = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    tokens = body.max_completion_tokens or body.max_tokens
    ask = Ask(model=body.model, params=params_for(tokens, body.temperature, body.top_p), stop=stops)
    if body.response_format is not None and body.response_format.type != "text":
        ask.json_format = body.response_format.model_dump(exclude_none=True)
    for message in body.messages:
        text, images = _content(message.content)
        if message.role in ("system", "developer"):
            ask.system.append(text)
        else:
            ask.turns.append((message.role, text))
        ask.images.extend(images)
    return ask


def completion(body: ChatCompletionRequest, result: Answer, completion_id: str, created: int) -> ChatCompletion:
    usage = Usage(
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        total_tokens=result.prompt_tokens + result.completion_tokens,
    )
    choice = Choice(message=AssistantMessage(content=result.text), finish_reason=result.finish_reason)
    return ChatCompletion(
        id=completion_id, created=created, model=body.model, choices=[choice], usage=usage, tags=result.tags
    )


def chunks(done: ChatCompletion, include_usage: bool) -> list[dict[str, Any]]:
    """The streamed form of a finished completion: content, finish reason, and usage if asked for."""
    head = {"id": done.id, "object": "chat.completion.chunk", "created": done.created, "model": done.model}
    choice = done.choices[0]
    delta = {"role": "assistant", "content": choice.message.content}
    out = [
        {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
        {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": choice.finish_reason}]},
    ]
    if done.tags is not None:
        out[-1]["tags"] = done.tags
    if include_usage:
        out.append({**head, "choices": [], "usage": done.usage.model_dump()})
    return out


async def _events(events: list[dict[str, Any]]) -> AsyncIterator[bytes]:
    for event in events:
        yield f"data: {json.dumps(event, ensure_ascii=False)}\n\n".encode()
    yield b"data: [DONE]\n\n"


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    summary="OpenAI-compatible chat completion about one image",
    openapi_extra=json_body("ChatCompletionRequest"),
    responses=STREAMED,  # type: ignore[arg-type]
)
async def chat_completions(request: Request, service: Service, settings: Config) -> Any:
    """OpenAI's chat completions: one image (`image_url`, a data URL or an http(s) URL) and text, through
    descry's batcher. Model `descry-caption` (or an image without text) answers with descry's checked caption."""
    body = await read_body(request, ChatCompletionRequest)
    result = await answer(service, to_ask(body), settings)
    done = completion(body, result, "chatcmpl-" + secrets.token_hex(12), int(time.time()))
    if not body.stream:
        return done
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return StreamingResponse(
        _events(chunks(done, include_usage)), media_type=SSE, headers={"Cache-Control": "no-cache"}
    )


class OutputText(BaseModel):
    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list[Any] = []


class OutputMessage(BaseModel):
    id: str
    type: Literal["message"] = "message"
    status: Literal["completed"] = "completed"
    role: Literal["assistant"] = "assistant"
    content: list[OutputText]


class ResponseUsage(BaseModel):
    input_tokens: int
    output_tokens: int
    total_tokens: int


class ResponseObject(BaseModel):
    """OpenAI's Responses API answer (the fields clients read); ``tags`` as in ChatCompletion."""

    id: str
    object: Literal["response"] = "response"
    created_at: int
    status: Literal["completed", "incomplete"] = "completed"
    model: str
    output: list[OutputMessage]
    usage: ResponseUsage
    tags: list[str] | None = None


def _input_message(message: InputMessage, ask: Ask) -> None:
    if isinstance(message.content, str):
        text, images = message.content, []
    else:
        text = "\n".join(part.text or "" for part in message.content if part.type != "input_image" and part.text)
        images = [part.image_url or "" for part in message.content if part.type == "input_image"]
    if message.role in ("system", "developer"):
        ask.system.append(text)
    else:
        ask.turns.append((message.role, text))
    ask.images.extend(images)


def responses_ask(body: ResponsesRequest) -> Ask:
    """A Responses API request in descry's terms; streaming is refused."""
    if body.stream:
        raise InputError(
            "streaming is not served on /v1/responses", hint="send stream=false or use /v1/chat/completions"
        )
    ask = Ask(model=body.model, params=params_for(body.max_output_tokens, body.temperature, body.top_p))
    if body.instructions:
        ask.system.append(body.instructions)
    if isinstance(body.input, str):
        ask.turns.append(("user", body.input))
    else:
        for message in body.input:
            _input_message(message, ask)
    fmt = body.text.format if body.text is not None else None
    if fmt is not None and fmt.type == "json_object":
        ask.json_format = {"type": "json_object"}
    elif fmt is not None and fmt.type == "json_schema":
        ask.json_format = {"type": "json_schema", "json_schema": {"name": fmt.name or "answer", "schema": fmt.schema_}}
    return ask


@router.post(
    "/responses",
    response_model=ResponseObject,
    summary="OpenAI-compatible Responses API answer about one image",
    openapi_extra=json_body("ResponsesRequest"),
)
async def responses(request: Request, service: Service, settings: Config) -> ResponseObject:
    """OpenAI's Responses API (no streaming): `input` messages with `input_text` and `input_image` (a data
    URL or an http(s) URL), `instructions`, `max_output_tokens`, `text.format`; one image per request."""
    body = await read_body(request, ResponsesRequest)
    result = await answer(service, responses_ask(body), settings)
    usage = ResponseUsage(
        input_tokens=result.prompt_tokens,
        output_tokens=result.completion_tokens,
        total_tokens=result.prompt_tokens + result.completion_tokens,
    )
    message = OutputMessage(id="msg_" + secrets.token_hex(12), content=[OutputText(text=result.text)])
    return ResponseObject(
        id="resp_" + secrets.token_hex(12),
        created_at=int(time.time()),
        status="incomplete" if result.finish_reason == "length" else "completed",
        model=body.model,
        output=[message],
        usage=usage,
        tags=result.tags,
    )
