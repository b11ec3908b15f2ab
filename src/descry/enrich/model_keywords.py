"""Tags asked of the model itself: the keyword prompt and a tolerant parser for its reply."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from PIL import Image

from descry.backends.base import Capabilities, Generation, Prompted
from descry.enrich.words import GENERIC_WORDS, STOP_WORDS
from descry.schemas import GenerationParams, Tag

log = logging.getLogger("descry.enrich.tags")  # tagging keeps one logger name across its modules

KEYWORD_PROMPT = (
    "List 5 to 10 keywords that describe this image: objects, people, places, activities and style. "
    "Reply with the keywords only, comma-separated, lowercase, no numbering."
)
MAX_MODEL_TAG_CHARS = 40
MAX_MODEL_TAG_WORDS = 4


def parse_keyword_list(text: str) -> list[str]:
    """Keywords from a model's reply: a JSON list or object, or a comma, semicolon or line list."""
    text = (text or "").strip()
    text = re.sub(r"^```\w*\s*|\s*```$", "", text).strip()
    items: list[Any] | None = None
    start, end = text.find("["), text.rfind("]")
    for candidate in (text, text[start : end + 1] if 0 <= start < end else ""):
        if not candidate:
            continue
        try:
            data = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(data, dict):
            data = next((v for v in data.values() if isinstance(v, list)), None)
        if isinstance(data, list):
            items = data
            break
    if items is None:
        text = re.sub(r"^\s*(?:keywords?|tags?)\s*:\s*", "", text, flags=re.IGNORECASE)
        items = [part for line in text.splitlines() for part in re.split(r"[,;|]", line)]
    out: list[str] = []
    for item in items:
        name = _normalise_model_tag(str(item))
        if name and name not in out:
            out.append(name)
    return out


def _normalise_model_tag(raw: str) -> str:
    name = re.sub(r"^\s*(?:[-*+•]|\d{1,2}[.)])\s*", "", raw)
    name = re.sub(r"[\"'“”‘’`*_#]", "", name).strip(" .:;!?()[]{}").lower()
    name = " ".join(name.split())
    if not name or len(name) > MAX_MODEL_TAG_CHARS or len(name.split()) > MAX_MODEL_TAG_WORDS:
        return ""
    return "" if name in STOP_WORDS or name in GENERIC_WORDS else name


async def model_tags(
    generate: Callable[[Prompted], Awaitable[Generation]],
    image: Image.Image,
    capabilities: Capabilities,
    *,
    source: str = "model",
    prompt: str = KEYWORD_PROMPT,
    max_new_tokens: int = 64,
) -> list[Tag]:
    """Ask an instruction-following model for keywords; [] for other models or on any failure."""
    if not (capabilities.instruct and capabilities.prompt):
        return []
    params = GenerationParams(max_new_tokens=max_new_tokens, temperature=0.0)
    try:
        generation = await generate(Prompted(image=image, prompt=prompt, params=params))
        names = parse_keyword_list(generation.text)
    except Exception as exc:  # noqa: BLE001 - model tags are a bonus; the caption must not fail
        log.warning("asking %s for tags failed: %s", source, exc)
        return []
    n = len(names)
    return [
        Tag(name=name, source=source, score=round(1.0 - 0.5 * i / max(n - 1, 1), 3))
        for i, name in enumerate(names)
    ]
