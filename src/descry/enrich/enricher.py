"""The Enricher: one decoded image through the caption agent (judge and retry), tags and the
optional enhancement into an Enrichment.

It reads nothing: ``descry.Descry`` reads and decodes first, and delivers to sinks after.
"""

from __future__ import annotations

import time

from descry.config import Settings
from descry.engine.pipeline import Engine
from descry.enrich import language as lang
from descry.enrich.agent import CaptionAgent, is_caption_task
from descry.enrich.enhance import Enhancer
from descry.enrich.tags import KEYWORD_PROMPT, model_tags
from descry.errors import EmptyCaption
from descry.imaging import DecodedImage
from descry.schemas import CaptionRequest, Enrichment, ImageInfo, ImageRef, Tag, usable_caption


class Enricher:
    """Turns one image reference and a request into curated metadata."""

    def __init__(self, engine: Engine, settings: Settings, *, enhancer: Enhancer | None = None) -> None:
        self.engine = engine
        self.settings = settings
        self.taggers = lang.Taggers(settings.tags)
        self.enhancer = enhancer or Enhancer(settings.enhance)

    @property
    def model_name(self) -> str:
        return self.engine.backend.model_name

    def check(self, request: CaptionRequest) -> str:
        """Refuse before any work what the model cannot do for ``request``; returns the caption language."""
        lang.check(request, self.settings, self.engine.backend.capabilities, self.model_name)
        return lang.request_language(request, self.settings)

    def _agent(self, request: CaptionRequest, language: str) -> tuple[CaptionAgent, CaptionRequest]:
        """The agent and the request it runs, both asking an instruction-following model for ``language``."""
        backend, caps = self.engine.backend, self.engine.backend.capabilities
        spec, asked = lang.localised(backend.spec, request, caps, language)
        settings = lang.agent_settings(self.settings.agent, language, caps)
        return CaptionAgent(self.engine.generate, spec, caps, settings), asked

    async def enrich(
        self, ref: ImageRef, request: CaptionRequest, image: DecodedImage, *, decode_s: float = 0.0
    ) -> Enrichment:
        """Caption, tag and polish one decoded image; ``decode_s`` is how long reading it took."""
        language = self.check(request)
        t1 = time.perf_counter()
        t0 = t1 - decode_s
        agent, asked = self._agent(request, language)
        outcome = await agent.run(image.image, asked)
        t2 = time.perf_counter()
        caption, original, enhanced, trace = outcome.caption, None, False, list(outcome.trace)
        translate = lang.needs_translation(language, self.engine.backend.capabilities)
        if translate and caption.strip():
            caption, original, enhanced = await self._translate(caption, language, trace)
        tags = await self._tags(caption, image, request, language)
        if not translate and lang.enhancing(request, self.settings):
            result = await self.enhancer.enhance(caption, [t.name for t in tags], language=language)
            trace.extend(result.trace)
            if result.enhanced:
                caption, original, enhanced = result.caption, result.original_caption, True
        if not usable_caption(caption) and not outcome.generation.structured:
            raise EmptyCaption(
                f"the model gave no usable caption after {len(outcome.attempts) or 1} attempt(s)",
                hint="nothing was written for this image; try another model, --detail detailed or a prompt",
                source=ref.name,
            )
        t3 = time.perf_counter()
        chosen = outcome.attempts[outcome.chosen] if outcome.attempts else None
        timings = {k: v for k, v in outcome.generation.timings.items() if k.endswith("_s")}
        timings.update(decode_s=t1 - t0, caption_s=t2 - t1, enrich_s=t3 - t2, total_s=t3 - t0)
        return Enrichment(
            name=ref.name,
            asset_id=request.asset_id,
            caption=caption,
            tags=tags,
            source=self.model_name,
            reasoning_trace=trace,
            attempts=outcome.attempts,
            chosen_attempt=outcome.chosen,
            enhanced=enhanced,
            original_caption=original,
            image=ImageInfo(width=image.width, height=image.height, format=image.format),
            task=chosen.task if chosen else request.task,
            structured=outcome.generation.structured,
            params=chosen.params if chosen else {},
            timings=timings,
            language=language if is_caption_task(chosen.task if chosen else None) else None,
        )

    async def _translate(self, caption: str, language: str, trace: list[str]) -> tuple[str, str, bool]:
        """The caption of a model that writes English only, translated by the enhancement LLM; raises when
        it did not come back in ``language`` (the image fails; nothing is written for it)."""
        result = await self.enhancer.enhance(caption, [], language=language)
        trace.extend(result.trace)
        lang.check_translation(result.caption, result.enhanced, language, trace)
        return result.caption, result.original_caption, True

    async def _tags(self, caption: str, image: DecodedImage, request: CaptionRequest, language: str) -> list[Tag]:
        if not request.tags or not self.settings.tags.enabled:
            return []
        extra: list[Tag] = []
        backend = self.engine.backend
        if self.settings.tags.model_tags and backend.capabilities.instruct:
            prompt = lang.ask_in(KEYWORD_PROMPT, language) or KEYWORD_PROMPT
            extra = await model_tags(
                self.engine.generate, image.image, backend.capabilities, source=self.model_name, prompt=prompt
            )
        return self.taggers.get(language).tags(caption, request=request, extra=extra)
