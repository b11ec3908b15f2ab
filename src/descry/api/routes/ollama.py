"""The Ollama-compatible routes: ``/api/chat``, ``/api/generate``, ``/api/tags``, ``/api/show``,
``/api/version`` and ``/api/ps``, with Ollama's fields and defaults.

``stream`` is true unless the client says false, as in Ollama: newline-delimited JSON, the answer in
one chunk and then a final ``done: true`` chunk with ``done_reason``, durations (nanoseconds) and token
counts. Images are base64 (``images``), one per request, read and answered through the batcher; errors
are Ollama's ``{"error": "..."}`` (``api.errors``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from descry._version import __version__
from descry.api.chat import Answer, Ask, answer, mode_for, params_for, read_body, served_names
from descry.api.compat_bodies import (
    OllamaBase,
    OllamaChatRequest,
    OllamaGenerateRequest,
    OllamaShowRequest,
)
from descry.api.deps import get_engine, get_service, get_settings
from descry.api.routes.openai import json_body
from descry.api.service import CaptionService
from descry.config import Settings
from descry.engine.pipeline import Engine
from descry.errors import UnknownModel

router = APIRouter(prefix="/api", tags=["ollama"])

Service = Annotated[CaptionService, Depends(get_service)]
Config = Annotated[Settings, Depends(get_settings)]
Loaded = Annotated[Engine, Depends(get_engine)]
NDJSON = "application/x-ndjson"
STREAMED = {200: {"content": {NDJSON: {"schema": {"type": "string", "description": "one JSON object a line"}}}}}
FAR_FUTURE = "2999-12-31T23:59:59Z"


class OllamaReply(BaseModel):
    """The final (or only) object of a chat or generate answer; ``tags`` is descry's checked caption's."""

    model: str
    created_at: str
    done: bool = True
    done_reason: str | None = None
    total_duration: int | None = None
    load_duration: int | None = None
    prompt_eval_count: int | None = None
    prompt_eval_duration: int | None = None
    eval_count: int | None = None
    eval_duration: int | None = None
    message: dict[str, str] | None = None
    response: str | None = None
    context: list[int] | None = None
    tags: list[str] | None = None


class Details(BaseModel):
    parent_model: str = ""
    format: str = "safetensors"
    family: str
    families: list[str]
    parameter_size: str = ""
    quantization_level: str = ""


class ModelEntry(BaseModel):
    name: str
    model: str
    modified_at: str
    size: int = 0
    digest: str
    details: Details
    expires_at: str | None = None
    size_vram: int | None = None


class TagsResponse(BaseModel):
    models: list[ModelEntry]


class ShowResponse(BaseModel):
    modelfile: str = ""
    parameters: str = ""
    template: str = ""
    details: Details
    model_info: dict[str, Any] = Field(default_factory=dict)
    capabilities: list[str]
    modified_at: str


class VersionResponse(BaseModel):
    version: str


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _ask(body: OllamaBase, ask: Ask) -> Ask:
    """Ollama's ``options`` and ``format`` onto a request."""
    options = body.options
    if options is not None:
        ask.params = params_for(options.num_predict, options.temperature, options.top_p)
        ask.stop = list(options.stop or [])
    if body.format == "json":
        ask.json_format = {"type": "json_object"}
    elif isinstance(body.format, dict):
        ask.json_format = {"type": "json_schema", "json_schema": {"name": "ollama", "schema": body.format}}
    return ask


def _final(body: OllamaBase, result: Answer) -> OllamaReply:
    nanos = int(result.seconds * 1e9)
    return OllamaReply(
        model=body.model,
        created_at=_now(),
        done_reason=result.finish_reason,
        total_duration=nanos,
        load_duration=0,
        prompt_eval_count=result.prompt_tokens,
        prompt_eval_duration=0,
        eval_count=result.completion_tokens,
        eval_duration=nanos,
        tags=result.tags,
    )


async def _lines(first: dict[str, Any], last: OllamaReply) -> AsyncIterator[bytes]:
    yield (json.dumps(first, ensure_ascii=False) + "\n").encode()
    yield (last.model_dump_json(exclude_none=True) + "\n").encode()


def _reply(body: OllamaBase, result: Answer, key: str) -> Any:
    """The whole answer in one object, or (streaming) the text in one chunk and the final chunk."""
    final = _final(body, result)
    content: Any = {"role": "assistant", "content": result.text} if key == "message" else result.text
    if not body.stream:
        return final.model_copy(update={key: content, "context": [] if key == "response" else None})
    first = {"model": body.model, "created_at": final.created_at, key: content, "done": False}
    empty: Any = {"role": "assistant", "content": ""} if key == "message" else ""
    last = final.model_copy(update={key: empty, "context": [] if key == "response" else None})
    return StreamingResponse(_lines(first, last), media_type=NDJSON)


@router.post(
    "/chat",
    response_model=OllamaReply,
    response_model_exclude_none=True,
    summary="Ollama-compatible chat about one image",
    openapi_extra=json_body("OllamaChatRequest"),
    responses=STREAMED,  # type: ignore[arg-type]
)
async def chat(request: Request, service: Service, settings: Config) -> Any:
    """Ollama's chat: `messages` with base64 `images` (one image per request); streams unless `stream: false`."""
    body = await read_body(request, OllamaChatRequest)
    ask = Ask(model=body.model)
    for message in body.messages:
        if message.role == "system":
            ask.system.append(message.content)
        else:
            ask.turns.append((message.role, message.content))
        ask.images.extend(message.images or [])
    return _reply(body, await answer(service, _ask(body, ask), settings), "message")


@router.post(
    "/generate",
    response_model=OllamaReply,
    response_model_exclude_none=True,
    summary="Ollama-compatible generation about one image",
    openapi_extra=json_body("OllamaGenerateRequest"),
    responses=STREAMED,  # type: ignore[arg-type]
)
async def generate(request: Request, service: Service, settings: Config) -> Any:
    """Ollama's generate: `prompt`, `system` and base64 `images`; no prompt and no image only checks the
    model is loaded (`done_reason: load`), as in Ollama."""
    body = await read_body(request, OllamaGenerateRequest)
    ask = Ask(model=body.model, system=[body.system] if body.system else [], turns=[("user", body.prompt)])
    ask.images.extend(body.images or [])
    if not body.prompt and not ask.images:
        mode_for(ask, settings, service.descry.engine.backend.model_name)  # an unknown model is still a 404
        return OllamaReply(model=body.model, created_at=_now(), response="", done_reason="load")
    return _reply(body, await answer(service, _ask(body, ask), settings), "response")


def _details(engine: Engine) -> Details:
    backend = engine.backend
    return Details(family=backend.name, families=[backend.name], quantization_level=backend.spec.quantization)


def _entry(name: str, engine: Engine, *, running: bool = False) -> ModelEntry:
    tagged = name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"
    digest = hashlib.sha256(tagged.encode()).hexdigest()
    extra = {"expires_at": FAR_FUTURE, "size_vram": 0} if running else {}
    return ModelEntry(name=tagged, model=tagged, modified_at=_now(), digest=digest, details=_details(engine), **extra)


@router.get("/tags", response_model=TagsResponse, response_model_exclude_none=True, summary="Models served")
async def tags(engine: Loaded, settings: Config) -> TagsResponse:
    """Every name the chat and generate routes answer to (the model, its aliases, the caption models)."""
    names = served_names(settings, engine.backend.model_name)
    return TagsResponse(models=[_entry(name, engine) for name in names])


@router.get("/ps", response_model=TagsResponse, response_model_exclude_none=True, summary="Models in memory")
async def ps(engine: Loaded, settings: Config) -> TagsResponse:
    """The loaded model, once it is ready."""
    if not engine.ready:
        return TagsResponse(models=[])
    return TagsResponse(models=[_entry(settings.model.name, engine, running=True)])


@router.post(
    "/show", response_model=ShowResponse, summary="About one model", openapi_extra=json_body("OllamaShowRequest")
)
async def show(request: Request, engine: Loaded, settings: Config) -> ShowResponse:
    """What Ollama's show answers for a served name (404 for any other)."""
    body = await read_body(request, OllamaShowRequest)
    name = str(body.model or body.name)
    if name.removesuffix(":latest") not in served_names(settings, engine.backend.model_name):
        raise UnknownModel(f"the model {name!r} is not served here", hint="GET /api/tags lists the served names")
    backend = engine.backend
    info = {"general.architecture": backend.name, "general.basename": backend.model_name}
    caps = ["completion", "vision"]
    return ShowResponse(details=_details(engine), model_info=info, capabilities=caps, modified_at=_now())


@router.get("/version", response_model=VersionResponse, summary="The server's version")
async def version() -> VersionResponse:
    """descry's version (Ollama clients read it to check the server answers)."""
    return VersionResponse(version=__version__)
