"""Tags for a caption: taxonomy categories, caption keywords and tags asked of the model.

Every tag carries its ``source`` ("taxonomy", "keywords", "request" or the model's name) and a
``score`` in 0..1. Matching works on lemmas (simplemma, offline; a small suffix rule set when it
is not installed), so "cars" and "car" both give the category automobiles. Tagging never fails a
caption: on any error it logs and returns no tags.

The parts live beside this module: ``words`` (tokens, stop words, lemmas), ``taxonomy``,
``keywords`` (from the caption) and ``model_keywords`` (asked of the model); they are re-exported here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from descry.config import TagSettings
from descry.enrich.keywords import MAX_WORD_CHARS, extract_keywords, load_spacy
from descry.enrich.model_keywords import (
    KEYWORD_PROMPT,
    MAX_MODEL_TAG_CHARS,
    MAX_MODEL_TAG_WORDS,
    model_tags,
    parse_keyword_list,
)
from descry.enrich.taxonomy import Taxonomy
from descry.enrich.words import (
    GENERIC_WORDS,
    IRREGULAR_PLURALS,
    STOP_WORDS,
    TOKEN,
    Lemmatizer,
    generic_words,
    stop_words,
    word_tokens,
)
from descry.schemas import CaptionRequest, Tag

__all__ = [
    "GENERIC_WORDS",
    "IRREGULAR_PLURALS",
    "KEYWORD_PROMPT",
    "MAX_MODEL_TAG_CHARS",
    "MAX_MODEL_TAG_WORDS",
    "MAX_WORD_CHARS",
    "PRIORITY",
    "STOP_WORDS",
    "TOKEN",
    "Lemmatizer",
    "Tagger",
    "Taxonomy",
    "extract_keywords",
    "model_tags",
    "parse_keyword_list",
]

log = logging.getLogger(__name__)

PRIORITY = {"request": 0, "taxonomy": 1, "keywords": 3}


class Tagger:
    """Turns a caption (and optionally model tags) into the final, filtered tag list."""

    def __init__(self, settings: TagSettings) -> None:
        self.settings = settings
        self.lemma = Lemmatizer(settings.language)
        self.taxonomy = Taxonomy.load(settings, self.lemma)
        self._nlp = load_spacy() if settings.language == "en" else None
        self.stop, self.generic = stop_words(settings.language), generic_words(settings.language)

    def key(self, name: str) -> str:
        """The form tags are compared in: lowercase lemmas joined by spaces."""
        return " ".join(self.lemma(w) for w in word_tokens(name))

    def _category_lemma(self, word: str) -> str:
        """Lemmas for taxonomy matching; past participles stay as written ("parked" is not "park")."""
        lemma = self.lemma(word)
        return word if word.endswith("ed") and lemma != word else lemma

    def categories(self, lemmas: list[str]) -> list[Tag]:
        tags = []
        for name, hits in self.taxonomy.match(lemmas).items():
            tags.append(
                Tag(name=name, source="taxonomy", score=round(min(1.0, 0.7 + 0.1 * (len(hits) - 1)), 3))
            )
        return tags

    def truncate(self, caption: str) -> str:
        """At most ``max_caption_chars`` characters, cut at a word boundary."""
        limit = self.settings.max_caption_chars
        if len(caption) <= limit:
            return caption
        cut = caption.rfind(" ", 0, limit)
        return caption[: cut if cut > 0 else limit]

    def tags(
        self,
        caption: str,
        *,
        request: CaptionRequest | None = None,
        max_tags: int | None = None,
        min_score: float | None = None,
        include: Iterable[str] | None = None,
        exclude: Iterable[str] | None = None,
        extra: Iterable[Tag] | None = None,
    ) -> list[Tag]:
        """Taxonomy categories, keywords and ``extra`` tags, filtered; never raises (logs and returns [])."""
        try:
            return self._tags(caption, request, max_tags, min_score, include, exclude, extra)
        except Exception as exc:  # noqa: BLE001 - tags must never fail a caption
            log.warning("tagging failed, returning no tags: %s", exc)
            return []

    def _tags(
        self,
        caption: Any,
        request: CaptionRequest | None,
        max_tags: int | None,
        min_score: float | None,
        include: Iterable[str] | None,
        exclude: Iterable[str] | None,
        extra: Iterable[Tag] | None,
    ) -> list[Tag]:
        if max_tags is None:
            max_tags = (
                request.max_tags if request and request.max_tags is not None else self.settings.max_tags
            )
        if min_score is None:
            floor = request.min_tag_score if request else None
            min_score = floor if floor is not None else self.settings.min_score
        include = list(include if include is not None else (request.include_tags if request else []))
        exclude = list(exclude if exclude is not None else (request.exclude_tags if request else []))
        text = self.truncate(caption if isinstance(caption, str) else "")
        lemmas = [self._category_lemma(w) for w in word_tokens(text)]
        generated = self.categories(lemmas) + list(extra or [])
        if self.settings.keywords:
            generated += extract_keywords(
                text,
                self.lemma,
                min_length=self.settings.min_length,
                nlp=self._nlp,
                stop=self.stop,
                generic=self.generic,
            )
        blocked = {self.key(x) for x in exclude if isinstance(x, str)} - {""}
        kept = self._merge(generated, blocked, min_score)[: max(max_tags, 0)]
        forced = self._merge(
            [Tag(name=x.strip()[:100], source="request", score=1.0) for x in include if isinstance(x, str)],
            blocked,
            0.0,
        )
        forced_keys = {self.key(t.name) for t in forced}
        return forced + [t for t in kept if self.key(t.name) not in forced_keys]

    def _merge(self, tags: list[Tag], blocked: set[str], min_score: float) -> list[Tag]:
        """De-duplicated on lemmas, blocked ones and low scores dropped, best first."""
        ordered = sorted(tags, key=lambda t: (-t.score, PRIORITY.get(t.source, 2), t.name))
        seen: set[str] = set()
        out: list[Tag] = []
        for tag in ordered:
            key = self.key(tag.name)
            if not key or key in seen or tag.score < min_score or self._blocked(key, blocked):
                continue
            seen.add(key)
            out.append(tag)
        return out

    @staticmethod
    def _blocked(key: str, blocked: set[str]) -> bool:
        return key in blocked or any(word in blocked for word in key.split())
