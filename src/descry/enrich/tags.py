"""Tags for a caption: taxonomy categories, caption keywords and tags asked of the model.

Every tag carries its ``source`` ("taxonomy", "keywords", "request" or the model's name) and a
``score`` in 0..1. Matching works on lemmas (simplemma, offline; a small suffix rule set when it
is not installed), so "cars" and "car" both give the category automobiles. Tagging never fails a
caption: on any error it logs and returns no tags.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from PIL import Image

from descry.backends.base import Capabilities, Generation, Prompted
from descry.config import TagSettings
from descry.errors import ConfigError
from descry.schemas import CaptionRequest, GenerationParams, Tag

log = logging.getLogger(__name__)

TOKEN = re.compile(r"[^\W\d_]+(?:['’\-][^\W\d_]+)*|\d+|[^\w\s]", re.UNICODE)
STOP_WORDS = frozenset(
    """a an the this that these those there here it its it's they them their theirs he him his she her hers
    we us our ours you your yours i me my mine one ones someone something anything everything nothing
    and or but nor so yet if then than as of in on at to from by for with without into onto over under
    above below between among through across along around about against behind beside besides near
    next up down out off inside outside within upon toward towards while during before after until since
    is are was were be been being am has have had having do does did doing can could will would shall
    should may might must not no very just also too only some any each every all both either neither
    few many much more most other another such own same what which who whom whose where when why how
    appears seems shows showing shown looks looking sits sitting stands standing holds holding wears
    wearing has having lies lying seen visible located placed features featuring depicts depicting
    displays displaying captures capturing contains containing includes including appear seem show look
    sit stand hold wear lie see feature depict display capture contain include way lot lots kind sort
    type bit front back top bottom side left right middle center centre part parts one two three four five
    six seven eight nine ten dozen first second third number""".split()
)
GENERIC_WORDS = frozenset(
    """image images picture pictures photo photos photograph photographs photography shot shots snapshot
    view scene scenes background foreground frame setting shape shapes thing things object objects item
    items area areas image's various several different large small big little tall short long wide
    close closeup close-up up-close detail details color colour colors colours style""".split()
)
KEYWORD_PROMPT = (
    "List 5 to 10 keywords that describe this image: objects, people, places, activities and style. "
    "Reply with the keywords only, comma-separated, lowercase, no numbering."
)
MAX_WORD_CHARS = 30
MAX_MODEL_TAG_CHARS = 40
MAX_MODEL_TAG_WORDS = 4
PRIORITY = {"request": 0, "taxonomy": 1, "keywords": 3}


# ---------------------------------------------------------------------------- lemmas


class Lemmatizer:
    """Word → lemma, with simplemma when installed and English suffix rules otherwise."""

    def __init__(self, language: str = "en") -> None:
        self.language = language
        self._cache: dict[str, str] = {}
        try:
            self._simplemma: Any = importlib.import_module("simplemma")
        except ImportError:
            self._simplemma = None
            log.info("simplemma is not installed; tags use simple suffix rules (pip install 'descry[tags]')")

    @property
    def backend(self) -> str:
        return "simplemma" if self._simplemma is not None else "rules"

    def __call__(self, word: str) -> str:
        word = word.lower()
        if word not in self._cache:
            self._cache[word] = self._lemma(word)
        return self._cache[word]

    def _lemma(self, word: str) -> str:
        if self._simplemma is not None:
            try:
                return str(self._simplemma.lemmatize(word, lang=self.language)).lower()
            except (ValueError, KeyError):
                return _suffix_lemma(word)
        return _suffix_lemma(word)


IRREGULAR_PLURALS = {
    "buses": "bus",
    "children": "child",
    "men": "man",
    "women": "woman",
    "mice": "mouse",
    "geese": "goose",
    "feet": "foot",
    "teeth": "tooth",
    "leaves": "leaf",
    "knives": "knife",
    "wolves": "wolf",
    "shelves": "shelf",
    "skis": "ski",
}


def _suffix_lemma(word: str) -> str:
    """A plural-stripping fallback for English."""
    if word in IRREGULAR_PLURALS:
        return IRREGULAR_PLURALS[word]
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "shes", "ches", "xes", "zes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is", "ous")):
        return word[:-1]
    return word


# ---------------------------------------------------------------------------- taxonomy


@dataclass(frozen=True)
class Taxonomy:
    """Categories and their keywords, both as lemma sequences."""

    categories: dict[str, tuple[tuple[str, ...], ...]]

    @staticmethod
    def read(path: Path | None) -> dict[str, list[str]]:
        """The raw ``category: [keywords]`` mapping of a YAML file (the default one when None)."""
        where = str(path) if path else "the default taxonomy"
        try:
            if path is None:
                text = resources.files("descry.enrich").joinpath("taxonomy.yaml").read_text("utf-8")
            else:
                text = Path(path).read_text("utf-8")
            data = yaml.safe_load(text) or {}
        except FileNotFoundError as exc:
            raise ConfigError(
                f"taxonomy file {where} does not exist", hint="fix DESCRY_TAGS__TAXONOMY_PATH or unset it"
            ) from exc
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ConfigError(
                f"cannot read taxonomy file {where}: {exc}",
                hint="it must be UTF-8 YAML mapping categories to keyword lists, e.g. 'sports: [ball]'",
            ) from exc
        if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, list) and all(isinstance(w, str | int) for w in v)
            for k, v in data.items()
        ):
            raise ConfigError(
                f"taxonomy file {where} is not a mapping of category names to keyword lists",
                hint="write it as e.g. 'sports: [ball, stadium]' with one category per line",
            )
        return {str(k): [str(w) for w in v] for k, v in data.items()}

    @classmethod
    def load(cls, settings: TagSettings, lemma: Callable[[str], str]) -> Taxonomy:
        """The default taxonomy, extended or replaced by ``settings.taxonomy_path``."""
        raw: dict[str, list[str]] = {}
        if settings.taxonomy_path is None or settings.taxonomy_mode == "extend":
            raw = cls.read(None)
        if settings.taxonomy_path is not None:
            for name, words in cls.read(settings.taxonomy_path).items():
                raw[name] = [*raw.get(name, []), *words]
        categories: dict[str, tuple[tuple[str, ...], ...]] = {}
        for name, keywords in raw.items():
            seqs = {tuple(lemma(w) for w in _word_tokens(k)) for k in keywords}
            categories[name.strip().lower()] = tuple(sorted(s for s in seqs if s))
        return cls(categories)

    def match(self, lemmas: list[str]) -> dict[str, list[str]]:
        """Category → the keywords that matched, in category order."""
        found: dict[str, list[str]] = {}
        for name, keywords in self.categories.items():
            hits = [" ".join(k) for k in keywords if _contains(lemmas, k)]
            if hits:
                found[name] = hits
        return found


def _contains(seq: list[str], sub: tuple[str, ...]) -> bool:
    size = len(sub)
    return any(tuple(seq[i : i + size]) == sub for i in range(len(seq) - size + 1))


def _word_tokens(text: str) -> list[str]:
    return [t.lower() for t in TOKEN.findall(text) if t[0].isalnum()]


# ---------------------------------------------------------------------------- keywords


@dataclass
class _Candidate:
    name: str
    first: int
    count: int = 1
    kind: str = "word"


def _is_verb_form(word: str, lemma: str) -> bool:
    return word != lemma and word.endswith(("ing", "ed"))


def _runs(
    tokens: list[str], lemma: Callable[[str], str], min_length: int
) -> list[list[tuple[int, str, str]]]:
    """Maximal runs of content words (position, word, lemma), split at stop words and punctuation."""
    runs: list[list[tuple[int, str, str]]] = []
    current: list[tuple[int, str, str]] = []
    for pos, token in enumerate(tokens):
        word = token.lower()
        lem = lemma(word) if word[0].isalpha() else word
        content = (
            word[0].isalpha()
            and word not in STOP_WORDS
            and lem not in STOP_WORDS
            and word not in GENERIC_WORDS
            and lem not in GENERIC_WORDS
            and min_length <= len(word) <= MAX_WORD_CHARS
            and not _is_verb_form(word, lem)
        )
        if content:
            current.append((pos, word, lem))
            continue
        if current:
            runs.append(current)
            current = []
        if word.endswith("ing") and _is_verb_form(word, lem) and word not in STOP_WORDS and len(word) > 5:
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


def _load_spacy() -> Any | None:
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
    text: str, lemma: Callable[[str], str], *, min_length: int = 3, nlp: Any | None = None
) -> list[Tag]:
    """Keyword tags from a caption: lemmas and short noun phrases, scored by position and frequency."""
    tokens = TOKEN.findall(text)
    if not tokens:
        return []
    found: dict[str, _Candidate] = {}

    def add(name: str, pos: int, kind: str) -> None:
        if name in found:
            found[name].count += 1
        else:
            found[name] = _Candidate(name, pos, kind=kind)

    for run in _runs(tokens, lemma, min_length):
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


# ---------------------------------------------------------------------------- model tags


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


# ---------------------------------------------------------------------------- the tagger


class Tagger:
    """Turns a caption (and optionally model tags) into the final, filtered tag list."""

    def __init__(self, settings: TagSettings) -> None:
        self.settings = settings
        self.lemma = Lemmatizer(settings.language)
        self.taxonomy = Taxonomy.load(settings, self.lemma)
        self._nlp = _load_spacy() if settings.language == "en" else None

    def key(self, name: str) -> str:
        """The form tags are compared in: lowercase lemmas joined by spaces."""
        return " ".join(self.lemma(w) for w in _word_tokens(name))

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
        lemmas = [self._category_lemma(w) for w in _word_tokens(text)]
        generated = self.categories(lemmas) + list(extra or [])
        if self.settings.keywords:
            generated += extract_keywords(
                text, self.lemma, min_length=self.settings.min_length, nlp=self._nlp
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
