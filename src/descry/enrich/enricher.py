"""The Enricher: one decoded image through the caption agent (judge and retry), tags and the
optional enhancement into an Enrichment.

It reads nothing: ``descry.Descry`` reads and decodes first, and delivers to sinks after.
"""

from __future__ import annotations

import time

from descry.config import Settings
from descry.engine.pipeline import Engine
from descry.enrich.agent import CaptionAgent
from descry.enrich.enhance import Enhancer
from descry.enrich.tags import Tagger, model_tags
from descry.errors import EmptyCaption
from descry.imaging import DecodedImage
from descry.schemas import CaptionRequest, Enrichment, ImageInfo, ImageRef, Tag, usable_caption


class Enricher:
    """Turns one image reference and a request into curated metadata."""

    def __init__(self, engine: Engine, settings: Settings, *, enhancer: Enhancer | None = None) -> None:
        self.engine = engine
        self.settings = settings
        self.tagger = Tagger(settings.tags)
        self.enhancer = enhancer or Enhancer(settings.enhance)

    @property
    def model_name(self) -> str:
        return self.engine.backend.model_name

    def _agent(self) -> CaptionAgent:
        backend = self.engine.backend
        return CaptionAgent(self.engine.generate, backend.spec, backend.capabilities, self.settings.agent)

    async def enrich(
        self, ref: ImageRef, request: CaptionRequest, image: DecodedImage, *, decode_s: float = 0.0
    ) -> Enrichment:
        """Caption, tag and polish one decoded image; ``decode_s`` is how long reading it took."""
        t1 = time.perf_counter()
        t0 = t1 - decode_s
        outcome = await self._agent().run(image.image, request)
        t2 = time.perf_counter()
        tags = await self._tags(outcome.caption, image, request)
        caption, original, enhanced, trace = outcome.caption, None, False, list(outcome.trace)
        if request.enhance if request.enhance is not None else self.settings.enhance.enabled:
            result = await self.enhancer.enhance(caption, [t.name for t in tags])
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
        )

    async def _tags(self, caption: str, image: DecodedImage, request: CaptionRequest) -> list[Tag]:
        if not request.tags or not self.settings.tags.enabled:
            return []
        extra: list[Tag] = []
        backend = self.engine.backend
        if self.settings.tags.model_tags and backend.capabilities.instruct:
            extra = await model_tags(self.engine.generate, image.image, backend.capabilities, source=self.model_name)
        return self.tagger.tags(caption, request=request, extra=extra)
