"""What the OpenAI- and Ollama-compatible routes share: a chat request turned into one image and a
prompt, the model it names, and one answer through the app's Descry (so through the batcher).

Answer modes:

- ``generate``: the client's text (system messages first, then the conversation) and its image go
  straight to the model through ``Descry.generate`` — no caption agent, tags or sinks;
- ``caption``: descry's checked caption (the caption agent, with tags) through ``Descry.enrich`` —
  when the request names one of ``compat.caption_models`` (default ``descry-caption``), or sends an
  image with no text in any user message while ``compat.caption_without_prompt`` is on (default).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from descry.api.jsonbody import INLINE_BYTES, max_entries, max_json_bytes, parse
from descry.api.service import CaptionService
from descry.backends.base import Capabilities
from descry.config import Settings
from descry.errors import ImageTooLarge, InputError, PayloadTooLarge, UnknownModel
from descry.schemas import CaptionRequest, GenerationParams, ImageRef, SourceKind
from descry.sources import is_url, upload_ref

Mode = Literal["generate", "caption"]
M = TypeVar("M", bound=BaseModel)
MAX_NEW_TOKENS = 4096
THREAD_BYTES = 64 * 1024  # base64 larger than this is decoded on a worker thread
JSON_HINT = "leave the JSON format out, or serve a model whose backend declares structured_output (openai_compat)"


@dataclass
class Ask:
    """One chat request in descry's terms."""

    model: str
    system: list[str] = field(default_factory=list)
    turns: list[tuple[str, str]] = field(default_factory=list)  # (role, text), in order
    images: list[Any] = field(default_factory=list)  # data URLs, http(s) URLs or raw base64 (Ollama)
    params: GenerationParams = field(default_factory=GenerationParams)
    stop: list[str] = field(default_factory=list)
    json_format: dict[str, Any] | None = None  # {"type": "json_object"} or {"type": "json_schema", ...}

    @property
    def user_text(self) -> str:
        return "\n".join(text for role, text in self.turns if role == "user" and text.strip())

    def prompt(self) -> str | None:
        """System text first, then the conversation (roles named when there is more than one turn)."""
        turns = [(role, text) for role, text in self.turns if text.strip()]
        body = turns[0][1] if len(turns) == 1 else "\n".join(f"{role.capitalize()}: {text}" for role, text in turns)
        return "\n\n".join(part for part in [*self.system, body] if part.strip()) or None


@dataclass
class Answer:
    """What the model (or the caption agent) said, with the numbers both protocols report."""

    text: str
    mode: Mode
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"
    seconds: float = 0.0
    tags: list[str] | None = None


def served_names(settings: Settings, model_name: str) -> list[str]:
    """The model names the compatible routes answer to: the configured model, its id, the aliases
    and the caption models."""
    compat = settings.compat
    names = [settings.model.name, model_name, *compat.aliases, *compat.caption_models]
    return list(dict.fromkeys(name for name in names if name))


def mode_for(ask: Ask, settings: Settings, model_name: str) -> Mode:
    """``caption`` or ``generate`` for a request's model name; an unknown name is UnknownModel (404)."""
    name = ask.model.strip().removesuffix(":latest")
    if name in settings.compat.caption_models:
        return "caption"
    if name and name not in served_names(settings, model_name):
        shown = ", ".join(served_names(settings, model_name))
        raise UnknownModel(f"the model {ask.model!r} is not served here", hint=f"use one of: {shown}")
    if settings.compat.caption_without_prompt and not ask.user_text:
        return "caption"
    return "generate"


def params_for(max_tokens: int | None, temperature: float | None, top_p: float | None) -> GenerationParams:
    """Generation parameters from a protocol's fields; a length above descry's cap is capped."""
    tokens = min(max_tokens, MAX_NEW_TOKENS) if max_tokens and max_tokens > 0 else None
    top_p = top_p if top_p is None or top_p > 0 else None  # 0 (OpenAI's "most likely only") is greedy anyway
    try:
        return GenerationParams(max_new_tokens=tokens, temperature=temperature, top_p=top_p)
    except ValidationError as exc:
        raise InputError(f"invalid generation parameters: {exc.errors()[0]['msg']}") from None


def decode_base64(text: str, name: str, max_bytes: int) -> bytes:
    """Strict base64 (whitespace allowed), refused before decoding when it would exceed ``max_bytes``."""
    compact = "".join(text.split())
    if len(compact) * 3 // 4 > max_bytes:
        raise ImageTooLarge(f"the image is larger than {max_bytes} bytes", source=name)
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(
            "the image is not valid base64", source=name, hint="send the file's bytes base64-encoded"
        ) from None
    if not data:
        raise InputError("the image is empty", source=name)
    return data


def image_ref(value: str, name: str, max_bytes: int) -> ImageRef:
    """An ImageRef for a data URL, an http(s) URL (read later through the SSRF guard) or raw base64."""
    if is_url(value):
        return ImageRef(kind=SourceKind.url, name=value, uri=value)
    if value.startswith("data:"):
        header, comma, payload = value.partition(",")
        if not comma or not header.endswith(";base64"):
            raise InputError("a data URL must be base64: data:image/png;base64,...", source=name)
        return upload_ref(name, decode_base64(payload, name, max_bytes))
    if ":" in value[:16]:  # another scheme (file:, s3:, ftp: ...); base64 has no colon
        raise InputError("an image must be a data URL, an http(s) URL or base64", source=name)
    return upload_ref(name, decode_base64(value, name, max_bytes))


async def the_image(ask: Ask, settings: Settings) -> ImageRef:
    """The request's one image (decoded from base64 off the event loop when it is large)."""
    if not ask.images:
        raise InputError("descry answers about an image; this request has none", hint="add one image to a user message")
    images = list(dict.fromkeys(ask.images))  # a conversation may repeat its image in later turns
    if len(images) > 1:
        raise InputError(f"{len(images)} images in one request; descry takes one", hint="send one request per image")
    value, limit = images[0], settings.limits.max_bytes
    if not isinstance(value, str) or not value:
        raise InputError("an image must be a non-empty string", source="image-0")
    if len(value) > THREAD_BYTES:
        return await asyncio.to_thread(image_ref, value, "image-0", limit)
    return image_ref(value, "image-0", limit)


def cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """The text up to the first stop sequence, and whether one was found."""
    cuts = [text.find(stop) for stop in stops if stop and stop in text]
    return (text[: min(cuts)], True) if cuts else (text, False)


async def answer(service: CaptionService, ask: Ask, settings: Settings) -> Answer:
    """Read the image and answer through the batcher: the model's own words or descry's checked caption."""
    backend = service.descry.engine.backend
    mode = mode_for(ask, settings, backend.model_name)
    ref = await the_image(ask, settings)
    if ask.json_format is not None and not _can_json(mode, backend.capabilities.structured_output):
        raise InputError(f"the model {backend.model_name} cannot constrain its answer to JSON", hint=JSON_HINT)
    started = time.perf_counter()
    if mode == "caption":
        result = await _caption(service, ref, ask)
    else:
        options = {"response_format": ask.json_format} if ask.json_format else {}
        prompt, task = _prompt_or_task(ask, backend.capabilities)
        gen = await service.descry.generate(ref, prompt, task=task, params=ask.params, options=options)
        service.metrics.image_done()
        text, stopped = cut_at_stop(gen.text, ask.stop)
        reason = "stop" if stopped or gen.finish_reason != "length" else "length"
        result = Answer(text, mode, gen.prompt_tokens, gen.output_tokens, reason)
    result.seconds = time.perf_counter() - started
    return result


def _prompt_or_task(ask: Ask, caps: Capabilities) -> tuple[str | None, str | None]:
    """The prompt, or for a model that takes task tokens instead (Florence-2) the task the user's text
    names; other text is not sent to such a model, which then runs its default task."""
    if caps.prompt:
        return ask.prompt(), None
    text = ask.user_text.strip()
    return None, text if text in caps.tasks else None


def _can_json(mode: Mode, structured: bool) -> bool:
    """A generation honours JSON when the backend can constrain it; a caption always has its JSON form."""
    return structured or mode == "caption"


async def _caption(service: CaptionService, ref: ImageRef, ask: Ask) -> Answer:
    """descry's checked caption with its tags; when JSON was asked for (any schema), descry's own JSON:
    ``{"caption": {"text", "confidence"}, "labels": [{"name", "confidence", "topicality"}], "tags": [...]}``
    (the shape PhotoPrism's caption and labels engines read)."""
    try:
        request = CaptionRequest(prompt=ask.user_text or None, params=ask.params)
    except ValidationError as exc:
        raise InputError(f"invalid caption request: {exc.errors()[0]['msg']}") from None
    done = await service.caption(ref, request, deliver=[])
    enrichment = done.enrichment
    tags = [tag.name for tag in enrichment.tags]
    text = enrichment.caption
    if ask.json_format is not None:
        labels = [{"name": t.name, "confidence": t.score, "topicality": t.score} for t in enrichment.tags]
        body = {"caption": {"text": text, "confidence": 1.0}, "labels": labels, "tags": tags}
        text = json.dumps(body, ensure_ascii=False)
    attempt = enrichment.attempts[enrichment.chosen_attempt] if enrichment.attempts else None
    tokens = attempt.output_tokens if attempt else len(text.split())
    return Answer(text, "caption", 0, tokens, "stop", tags=tags)


async def read_body(request: Request, model: type[M]) -> M:
    """The JSON body as ``model``, within the JSON bounds of ``api.jsonbody`` and room for one image."""
    settings: Settings = request.app.state.settings
    items = settings.security.max_batch_items
    raw = await request.body()
    limit = max(max_json_bytes(items), settings.limits.max_bytes * 4 // 3 + INLINE_BYTES)
    if len(raw) > limit:
        raise PayloadTooLarge(f"the JSON body is larger than {limit} bytes", hint="send a smaller image")
    if len(raw) <= INLINE_BYTES:
        return parse(raw, model, max_entries(items))
    return await asyncio.to_thread(parse, raw, model, max_entries(items))
