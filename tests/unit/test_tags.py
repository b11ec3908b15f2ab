"""Tags: lemmatised taxonomy matching, keyword extraction, filters, model tags, robustness."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from descry.backends.base import Capabilities, Generation, Prompted
from descry.config import TagSettings
from descry.enrich.tags import (
    MAX_WORD_CHARS,
    Lemmatizer,
    Tagger,
    Taxonomy,
    model_tags,
    parse_keyword_list,
)
from descry.enrich.words import _suffix_lemma
from descry.errors import ConfigError, RemoteModelError
from descry.schemas import CaptionRequest, Tag


@pytest.fixture(scope="module")
def tagger() -> Tagger:
    return Tagger(TagSettings())


def names(tags: list[Tag], source: str | None = None) -> list[str]:
    return [t.name for t in tags if source is None or t.source == source]


@pytest.mark.parametrize("caption", ["A red car on a street.", "Three cars on a street.", "Two CARS"])
def test_singular_and_plural_give_the_same_category(tagger: Tagger, caption: str) -> None:
    assert "automobiles" in names(tagger.tags(caption), "taxonomy")


def test_categories_from_several_domains(tagger: Tagger) -> None:
    tags = tagger.tags("Two dogs chase a football across a stadium while children eat pizza.")
    assert {"animals", "sports", "food", "people"} <= set(names(tags, "taxonomy"))
    assert all(0 < t.score <= 1 for t in tags)


def test_multi_word_keywords_and_verb_forms(tagger: Tagger) -> None:
    assert "automobiles" in names(tagger.tags("A shiny race car in the pit"), "taxonomy")
    assert "sports" in names(tagger.tags("people surfing on big waves"), "taxonomy")
    assert "nature" not in names(tagger.tags("Two cars parked by a house"), "taxonomy")  # parked is not park


def test_keywords_are_lemmas_and_phrases_without_stop_or_generic_words(tagger: Tagger) -> None:
    tags = tagger.tags("This picture shows two red cars parked in front of an old house.")
    keywords = names(tags, "keywords")
    assert "car" in keywords and "cars" not in keywords
    assert "red car" in keywords
    assert "old house" in keywords
    for word in ("this", "picture", "the", "an", "two", "front", "of", "in", "shows"):
        assert word not in keywords
    assert len(keywords) == len(set(keywords))
    assert all(len(k) >= 3 for k in keywords)
    assert all(k == k.lower() for k in keywords)


def test_tags_are_sorted_by_score_and_unique(tagger: Tagger) -> None:
    tags = tagger.tags("A dog and a dog and another dog play with a ball near a dog house.")
    scores = [t.score for t in tags]
    assert scores == sorted(scores, reverse=True)
    assert len({tagger.key(t.name) for t in tags}) == len(tags)


def test_exclusions_match_on_lemmas_and_words(tagger: Tagger) -> None:
    tags = tagger.tags("A red car on a busy street", exclude=["cars", "Automobiles"])
    assert not any("car" in n.split() for n in names(tags))
    assert "automobiles" not in names(tags)
    assert "street" in names(tags)


def test_request_options(tagger: Tagger) -> None:
    caption = "A red car and a blue bus on a busy city street next to a tall office building."
    request = CaptionRequest(max_tags=3, include_tags=["Archive 2024"], exclude_tags=["bus"])
    tags = tagger.tags(caption, request=request)
    assert tags[0] == Tag(name="Archive 2024", source="request", score=1.0)
    assert len(tags) == 4  # include tags come on top of max_tags
    assert "bus" not in names(tags)
    high = tagger.tags(caption, request=CaptionRequest(min_tag_score=0.75))
    assert high and all(t.score >= 0.75 for t in high)
    assert tagger.tags(caption, max_tags=0) == []
    assert len(tagger.tags(caption, request=request, max_tags=1)) == 2  # explicit argument wins


def test_extra_tags_are_merged_and_deduplicated(tagger: Tagger) -> None:
    extra = [
        Tag(name="dogs", source="tiny-vlm", score=0.95),
        Tag(name="golden hour", source="tiny-vlm", score=0.9),
    ]
    tags = tagger.tags("A dog on a beach at sunset", extra=extra)
    dogs = [t for t in tags if tagger.key(t.name) == "dog"]
    assert len(dogs) == 1 and dogs[0].source == "tiny-vlm"
    assert "golden hour" in names(tags, "tiny-vlm")


def test_long_captions_are_truncated(tagger: Tagger) -> None:
    caption = "A quiet green meadow. " * 60 + "A red car."
    assert len(caption) > 1000
    assert "automobiles" not in names(tagger.tags(caption))
    assert len(tagger.truncate(caption)) <= 1000


@pytest.mark.parametrize(
    "caption",
    [
        None,
        42,
        "",
        "   ",
        "🚗🚗🚗 🐕",
        "x" * 100_000,
        "\x00\x01 a car",
        "ünïcödé wörds ñ",
        "...,,,!!!",
        "car " * 5000,
    ],
)
def test_never_raises(tagger: Tagger, caption: object) -> None:
    tags = tagger.tags(caption)  # type: ignore[arg-type]
    assert isinstance(tags, list)
    assert all(len(t.name) <= 2 * MAX_WORD_CHARS + 10 for t in tags)


def test_internal_failure_returns_no_tags(tagger: Tagger, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> list[Tag]:
        raise RuntimeError("boom")

    monkeypatch.setattr(tagger, "categories", broken)
    assert tagger.tags("A red car") == []


def test_user_taxonomy_extends_or_replaces(tmp_path: Path) -> None:
    path = tmp_path / "tax.yaml"
    path.write_text("vintage: [gramophone, typewriters]\nautomobiles: [roadster]\n")
    extended = Tagger(TagSettings(taxonomy_path=path))
    assert "vintage" in names(extended.tags("An old typewriter on a desk"), "taxonomy")
    assert "automobiles" in names(extended.tags("A roadster"), "taxonomy")
    assert "automobiles" in names(extended.tags("A car"), "taxonomy")
    replaced = Tagger(TagSettings(taxonomy_path=path, taxonomy_mode="replace"))
    assert set(replaced.taxonomy.categories) == {"vintage", "automobiles"}
    assert "automobiles" not in names(replaced.tags("A car"), "taxonomy")


@pytest.mark.parametrize("content", ["- just\n- a list\n", "sports: ball\n", "a: [b\n", "42\n"])
def test_bad_taxonomy_file_is_a_config_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError) as info:
        Tagger(TagSettings(taxonomy_path=path))
    assert info.value.hint


def test_missing_taxonomy_file_says_which_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist") as info:
        Taxonomy.read(tmp_path / "nope.yaml")
    assert "TAXONOMY_PATH" in (info.value.hint or "")


def test_default_taxonomy_is_package_data() -> None:
    raw = Taxonomy.read(None)
    assert {
        "sports",
        "automobiles",
        "animals",
        "food",
        "people",
        "nature",
        "architecture",
        "technology",
        "art",
    } <= set(raw)


@pytest.mark.parametrize(
    ("word", "lemma"),
    [("cars", "car"), ("buses", "bus"), ("puppies", "puppy"), ("glasses", "glass"), ("bus", "bus")],
)
def test_suffix_rules_fallback(word: str, lemma: str) -> None:
    assert _suffix_lemma(word) == lemma


def test_lemmatizer_uses_simplemma_when_installed() -> None:
    lemma = Lemmatizer("en")
    assert lemma("Cars") == "car"
    assert lemma.backend in {"simplemma", "rules"}
    if lemma.backend == "simplemma":
        assert lemma("children") == "child"


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ('["Dog", "beach", "Ball"]', ["dog", "beach", "ball"]),
        ('```json\n{"keywords": ["dog", "sandy beach"]}\n```', ["dog", "sandy beach"]),
        ('Sure: ["dog", "beach"]', ["dog", "beach"]),
        ("dog, beach, ball", ["dog", "beach", "ball"]),
        ("Keywords: dog; beach | ball", ["dog", "beach", "ball"]),
        ('1. Dog\n2) **Beach**\n- "sunset"\n* sand, sea', ["dog", "beach", "sunset", "sand", "sea"]),
        ("dog, dog, Dog., the, image", ["dog"]),
        ("", []),
        ("a keyword that is far too long to be a useful tag at all, ok", ["ok"]),
    ],
)
def test_parse_keyword_list(reply: str, expected: list[str]) -> None:
    assert parse_keyword_list(reply) == expected


async def test_model_tags_ask_instruct_models_only() -> None:
    calls: list[Prompted] = []

    async def generate(item: Prompted) -> Generation:
        calls.append(item)
        return Generation(text="dog, beach, ball")

    image = Image.new("RGB", (8, 8))
    tags = await model_tags(generate, image, Capabilities(instruct=True), source="tiny-vlm")
    assert names(tags) == ["dog", "beach", "ball"]
    assert {t.source for t in tags} == {"tiny-vlm"}
    assert [t.score for t in tags] == sorted((t.score for t in tags), reverse=True)
    assert len(calls) == 1 and calls[0].prompt and calls[0].params.max_new_tokens
    assert await model_tags(generate, image, Capabilities(instruct=False)) == []
    assert len(calls) == 1


async def test_model_tags_failure_gives_no_tags() -> None:
    async def generate(item: Prompted) -> Generation:
        raise RemoteModelError("down")

    assert await model_tags(generate, Image.new("RGB", (8, 8)), Capabilities(instruct=True)) == []


def test_tags_work_without_simplemma(monkeypatch: pytest.MonkeyPatch) -> None:
    import descry.enrich.words as words_module

    real = words_module.importlib.import_module

    def no_simplemma(name: str, *args: object) -> object:
        if name == "simplemma":
            raise ImportError(name)
        return real(name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(words_module.importlib, "import_module", no_simplemma)
    tagger = Tagger(TagSettings())
    assert tagger.lemma.backend == "rules"
    tags = tagger.tags("Three cars and two buses")
    assert "automobiles" in names(tags, "taxonomy")
    assert {"car", "bus"} <= set(names(tags, "keywords"))
