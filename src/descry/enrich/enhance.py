"""The optional LLM polish: a chat model (gpt-oss on vLLM or Ollama, or any OpenAI-compatible
server) rewrites the caption for readability without adding facts.

An enhancer never fails a caption. When the server is down, slow or answers with junk (nothing,
a refusal, markdown, a loop, a cut-off or far longer text), the original caption stands,
``enhanced`` is False and the trace says why.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from descry.config import EnhanceSettings
from descry.enrich import quality
from descry.enrich.language import is_english, language_name
from descry.errors import DescryError
from descry.openai_client import AsyncChatClient, ChatResult

log = logging.getLogger(__name__)

TRACE_ENHANCED = "Enhanced the caption with"
TRACE_KEPT_ORIGINAL = "Enhancement skipped:"

SYSTEM_PROMPT = (
    "You polish image captions written by a vision model. Rewrite the caption so that it reads well: "
    "fix grammar, remove repetition and filler, keep it concise and in the caption's language. "
    "Use the keywords only where the caption already supports them. Do not invent facts: add no "
    "objects, people, names, text, colours, places, numbers or actions that the caption does not state, "
    "and drop nothing important that it does state. Reply with the improved caption only: plain text, "
    "no preamble, no quotes, no lists and no markdown."
)
TRANSLATE = "in {name}: if the caption is in another language, translate it faithfully"
MAX_GROWTH = 3
MAX_EXTRA_CHARS = 200


@dataclass
class EnhanceOutcome:
    """The caption after the polish (the original when it was not used) and why."""

    caption: str
    enhanced: bool
    original_caption: str
    trace: list[str] = field(default_factory=list)


def system_prompt(language: str | None = None) -> str:
    """The polish instructions; with a language other than English, the reply must be in it (a translation)."""
    if language is None or is_english(language):
        return SYSTEM_PROMPT
    return SYSTEM_PROMPT.replace("in the caption's language", TRANSLATE.format(name=language_name(language)))


def user_message(caption: str, tags: list[str]) -> str:
    keywords = ", ".join(t for t in tags if t) or "none"
    return f"Caption: {caption}\nKeywords: {keywords}"


def junk_reason(reply: str, original: str, finish_reason: str) -> str | None:
    """Why a (cleaned) reply is unusable, or None when it is a fair caption."""
    if not reply.strip():
        return "the model returned an empty reply"
    if finish_reason == "length":
        return "the reply was cut off at the token limit (raise DESCRY_ENHANCE__MAX_TOKENS)"
    if len(reply) > MAX_GROWTH * len(original) + MAX_EXTRA_CHARS:
        return f"the reply was far longer than the caption ({len(reply)} characters for {len(original)})"
    if quality.is_refusal(reply):
        return "the model refused or did not answer"
    if quality.has_markdown(reply):
        return "the reply was formatted as markdown, not a caption"
    if quality.is_repetitive(reply):
        return "the reply repeated itself"
    return None


class Enhancer:
    """Polishes captions through an OpenAI-compatible chat endpoint."""

    def __init__(self, settings: EnhanceSettings, *, client: AsyncChatClient | None = None) -> None:
        self.settings = settings
        self._client = client
        self._owns_client = client is None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _get_client(self) -> AsyncChatClient:
        """One client per event loop (httpx pools belong to the loop that opened them)."""
        loop = asyncio.get_running_loop()
        if self._client is None or (self._owns_client and self._loop is not loop):
            self._client = AsyncChatClient(
                self.settings.base_url,
                self.settings.api_key,
                timeout=self.settings.timeout,
                max_retries=self.settings.max_retries,
            )
            self._loop = loop
        return self._client

    def request_extra(self) -> dict[str, Any]:
        """Body fields beyond the standard ones: the reasoning effort gpt-oss understands."""
        return {"reasoning_effort": self.settings.reasoning_effort}

    async def _ask(self, caption: str, tags: list[str], language: str | None = None) -> ChatResult:
        messages = [
            {"role": "system", "content": system_prompt(language)},
            {"role": "user", "content": user_message(caption, tags)},
        ]
        return await self._get_client().chat(
            self.settings.model,
            messages,
            max_tokens=self.settings.max_tokens,
            temperature=0.2,
            extra=self.request_extra(),
        )

    async def enhance(
        self, caption: str, tags: list[str] | None = None, *, language: str | None = None
    ) -> EnhanceOutcome:
        """The polished caption (in ``language`` when given: translated if need be), or the original with
        the reason it was kept; never raises."""
        original = caption or ""

        def kept(reason: str) -> EnhanceOutcome:
            line = f"{TRACE_KEPT_ORIGINAL} {reason}; the original caption was kept."
            return EnhanceOutcome(caption=original, enhanced=False, original_caption=original, trace=[line])

        if not original.strip():
            return kept("there was no caption to enhance")
        try:
            result = await asyncio.wait_for(self._ask(original, list(tags or []), language), self.settings.timeout)
        except TimeoutError:
            return kept(f"{self.settings.model} did not answer within {self.settings.timeout:g}s")
        except DescryError as exc:
            return kept(f"{self.settings.model} failed ({exc})")
        except Exception as exc:  # noqa: BLE001 - the polish is optional; the caption must survive
            log.exception("caption enhancement failed unexpectedly")
            return kept(f"{self.settings.model} failed unexpectedly ({type(exc).__name__}: {exc})")
        reply = quality.clean(result.text)
        reason = junk_reason(reply, original, result.finish_reason)
        if reason:
            return kept(reason)
        if " ".join(reply.split()) == " ".join(original.split()):
            return kept("the model returned the caption unchanged")
        effort = self.settings.reasoning_effort
        line = (
            f"{TRACE_ENHANCED} {self.settings.model} (reasoning effort {effort}); the original is kept too."
        )
        return EnhanceOutcome(caption=reply, enhanced=True, original_caption=original, trace=[line])

    async def aclose(self) -> None:
        """Close the HTTP client if this enhancer opened it."""
        if self._client is not None and self._owns_client:
            await self._client.aclose()
            self._client = None
