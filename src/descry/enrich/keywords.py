"""Keyword tags from a caption: lemmas and short noun phrases, scored by position and frequency."""

from __future__ import annotations

import importlib
import importlib.util
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from descry.enrich.words import GENERIC_WORDS, STOP_WORDS, TOKEN
from descry.schemas import Tag

log = logging.getLogger("descry.enrich.tags")  # tagging keeps one logger name across its modules

MAX_WORD_CHARS = 30


@dataclass
class _Candidate:
    name: str
    first: int
    count: int = 1
    kind: str = "word"


def _is_verb_form(word: str, lemma: str) -> bool:
    return word != lemma and word.endswith(("ing", "ed"))


def _runs(
    tokens: list[str],
    lemma: Callable[[str], str],
    min_length: int,
    stop: frozenset[str] = STOP_WORDS,
    generic: frozenset[str] = GENERIC_WORDS,
) -> list[list[tuple[int, str, str]]]:
    """Maximal runs of content words (position, word, lemma), split at stop words and punctuation."""
    runs: list[list[tuple[int, str, str]]] = []
    current: list[tuple[int, str, str]] = []
    for pos, token in enumerate(tokens):
        word = token.lower()
        lem = lemma(word) if word[0].isalpha() else word
        content = (
            word[0].isalpha()
            and word not in stop
            and lem not in stop
            and word not in generic
            and lem not in generic
            and min_length <= len(word) <= MAX_WORD_CHARS
            and not _is_verb_form(word, lem)
        )
        if content:
            current.append((pos, word, lem))
            continue
        if current:
            runs.append(current)
            current = []
        if word.endswith("ing") and _is_verb_form(word, lem) and word not in stop and len(word) > 5:
            runs.append([(pos, word, word)])
    if current:
        runs.append(current)
    return runs


def _spacy_phrases(nlp: Any, text: str) -> list[tuple[int, str]]:
    """Noun chunks (lemmatised, without determiners) when a spaCy English pipeline is installed."""
    out: list[tuple[int, str]] = []
    for chunk in nlp(text).noun_chunks:
        words = [t.lemma_.lower() for t in chunk if t.pos_ not in {"DET", "PRON"} and not t.is_stop]
        if 2 <= len(words) <= 3:
            out.append((chunk.start, " ".join(words)))
    return out


def load_spacy() -> Any | None:
    """spaCy's small English pipeline if it happens to be installed; never downloads it."""
    if importlib.util.find_spec("spacy") is None or importlib.util.find_spec("en_core_web_sm") is None:
        return None
    try:
        return importlib.import_module("spacy").load("en_core_web_sm", disable=["ner"])
    except Exception as exc:  # noqa: BLE001 - an optional extra that fails to load is skipped
        log.warning(
            "spaCy is installed but en_core_web_sm did not load (%s); using the built-in phrases", exc
        )
        return None


def extract_keywords(
    text: str,
    lemma: Callable[[str], str],
    *,
    min_length: int = 3,
    nlp: Any | None = None,
    stop: frozenset[str] = STOP_WORDS,
    generic: frozenset[str] = GENERIC_WORDS,
) -> list[Tag]:
    """Keyword tags from a caption: lemmas and short noun phrases, scored by position and frequency.

    ``stop`` and ``generic`` are the caption language's function words and picture words (English by default).
    """
    tokens = TOKEN.findall(text)
    if not tokens:
        return []
    found: dict[str, _Candidate] = {}

    def add(name: str, pos: int, kind: str) -> None:
        if name in found:
            found[name].count += 1
        else:
            found[name] = _Candidate(name, pos, kind=kind)

    for run in _runs(tokens, lemma, min_length, stop, generic):
        if len(run) == 1 and run[0][1] == run[0][2] and _is_verb_form(run[0][1], lemma(run[0][1])):
            add(run[0][1], run[0][0], "activity")
            continue
        for i, (pos, _word, lem) in enumerate(run):
            add(lem, pos, "head" if i == len(run) - 1 else "word")
        if nlp is None and len(run) >= 2:
            tail = run[-3:] if len(run) <= 3 else run[-2:]
            phrase = " ".join([w for _, w, _ in tail[:-1]] + [tail[-1][2]])
            add(phrase, tail[0][0], "phrase")
    if nlp is not None:
        for pos, phrase in _spacy_phrases(nlp, text):
            add(phrase, pos, "phrase")
    base = {"phrase": 0.65, "head": 0.55, "word": 0.45, "activity": 0.4}
    total = len(tokens)
    tags = []
    for cand in found.values():
        score = base[cand.kind] + 0.25 * (1 - cand.first / total) + 0.1 * min(cand.count - 1, 2)
        tags.append(Tag(name=cand.name, source="keywords", score=round(min(score, 1.0), 3)))
    return tags
