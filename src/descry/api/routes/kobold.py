"""``POST /api/v1/generate`` in KoboldCpp's shape, which taggui's remote captioning mode calls.

taggui sends ``{"prompt", "images": [base64], "max_new_tokens", "temperature", "do_sample", ...}`` with
the prompt already wrapped in a chat template, and reads ``results[0].text``. The template's special
tokens and role lines are removed, so the model sees the instruction itself; the answer goes through
the batcher like every other route's (descry's checked caption when the prompt is empty).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from descry.api.chat import Ask, answer, params_for, read_body
from descry.api.compat_bodies import KoboldGenerateRequest
from descry.api.deps import get_service, get_settings
from descry.api.routes.openai import json_body
from descry.api.service import CaptionService
from descry.config import Settings

router = APIRouter(prefix="/api/v1", tags=["kobold"])

Service = Annotated[CaptionService, Depends(get_service)]
Config = Annotated[Settings, Depends(get_settings)]
SPECIAL = re.compile(r"<\|[^<>|]{1,40}\|>|</?image>")
ROLE_LINE = re.compile(r"^\s*(system|user|assistant)\s*$", re.IGNORECASE | re.MULTILINE)


class KoboldResult(BaseModel):
    text: str


class KoboldResponse(BaseModel):
    """``results[0].text`` is the answer; ``tags`` is set when it is descry's checked caption."""

    results: list[KoboldResult]
    tags: list[str] | None = None


def plain_prompt(prompt: str) -> str:
    """The instruction inside a chat-templated prompt: special tokens and role lines removed."""
    text = ROLE_LINE.sub("", SPECIAL.sub("\n", prompt))
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())


@router.post(
    "/generate",
    response_model=KoboldResponse,
    response_model_exclude_none=True,
    summary="KoboldCpp-compatible generation about one image (taggui's remote mode)",
    openapi_extra=json_body("KoboldGenerateRequest"),
)
async def generate(request: Request, service: Service, settings: Config) -> Any:
    """KoboldCpp's generate: `prompt` and base64 `images`; answers `{"results": [{"text": ...}]}`."""
    body = await read_body(request, KoboldGenerateRequest)
    temperature = 0.0 if body.do_sample is False else body.temperature
    params = params_for(body.max_new_tokens or body.max_length, temperature, body.top_p)
    ask = Ask(model=body.model, turns=[("user", plain_prompt(body.prompt))], images=list(body.images or []))
    ask.params = params
    result = await answer(service, ask, settings)
    return KoboldResponse(results=[KoboldResult(text=result.text)], tags=result.tags)
