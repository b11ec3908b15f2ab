"""The caption language: which one a request gets, how it reaches the prompt, the agent's check and the tags."""

from __future__ import annotations

from pathlib import Path

import pytest

from descry.backends.base import BRIEF, DETAILED, Capabilities, chat_spec
from descry.config import AgentSettings, Settings, TagSettings
from descry.enrich import language as lang
from descry.enrich import quality
from descry.enrich.enhance import SYSTEM_PROMPT, system_prompt
from descry.enrich.words import Lemmatizer
from descry.errors import CapabilityError, RemoteModelError
from descry.schemas import CaptionRequest

CHAT = Capabilities(instruct=True, prompt=True)
BLIP = Capabilities(instruct=False, prompt=True)
FLORENCE = Capabilities(instruct=False, prompt=False, tasks=frozenset({"<CAPTION>"}), default_task="<CAPTION>")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DESCRY_LANGUAGE", "DESCRY_AGENT__LANGUAGE", "DESCRY_TAGS__LANGUAGE", "DESCRY_ENHANCE__ENABLED"):
        monkeypatch.delenv(name, raising=False)


def test_the_request_wins_then_the_setting_then_older_settings_then_english(
    clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert lang.request_language(CaptionRequest(), Settings()) == "en"
    assert lang.request_language(CaptionRequest(language="pt-BR"), Settings(language="de")) == "pt-BR"
    monkeypatch.setenv("DESCRY_LANGUAGE", "fr")
    assert lang.request_language(CaptionRequest(), Settings()) == "fr"
    monkeypatch.delenv("DESCRY_LANGUAGE")
    monkeypatch.setenv("DESCRY_TAGS__LANGUAGE", "nl")
    assert lang.request_language(CaptionRequest(), Settings()) == "nl"


def test_bad_language_tags_are_refused_by_the_setting() -> None:
    with pytest.raises(ValueError):
        Settings(language="not a language")


def test_instruction_following_models_are_asked_in_the_language() -> None:
    spec = chat_spec("m", "hf_vlm")
    asked_spec, asked = lang.localised(spec, CaptionRequest(language="de"), CHAT, "de")
    assert asked_spec.default_prompt is not None and asked_spec.default_prompt.startswith(BRIEF)
    assert asked_spec.default_prompt.endswith("German.") and asked_spec.detailed_prompt.startswith(DETAILED)  # type: ignore[union-attr]
    assert asked.prompt is None  # no prompt of the caller's: the model's own prompts carry the language
    _, own = lang.localised(spec, CaptionRequest(prompt="Describe the light."), CHAT, "pt-BR")
    assert (
        own.prompt is not None and own.prompt.startswith("Describe the light.") and "Brazilian Portuguese" in own.prompt
    )
    # English changes nothing, and models that cannot follow instructions are never sent the sentence
    assert lang.localised(spec, CaptionRequest(), CHAT, "en") == (spec, CaptionRequest())
    assert lang.localised(spec, CaptionRequest(prompt="a photo of"), BLIP, "de")[1].prompt == "a photo of"
    assert lang.ask_in(lang.ask_in("Describe.", "de"), "de") == lang.ask_in("Describe.", "de")


def test_non_instruct_models_need_the_enhancer_for_another_language(clean_env: None) -> None:
    for caps in (BLIP, FLORENCE):
        with pytest.raises(CapabilityError) as info:
            lang.check(CaptionRequest(language="de"), Settings(), caps, "blip")
        assert info.value.code == "unsupported_request" and info.value.hint
        lang.check(CaptionRequest(language="de", enhance=True), Settings(), caps, "blip")
        lang.check(CaptionRequest(language="en-GB"), Settings(), caps, "blip")
    lang.check(CaptionRequest(language="de"), Settings(), CHAT, "qwen")
    with pytest.raises(CapabilityError):
        lang.check(CaptionRequest(language="de", enhance=False), Settings(enhance={"enabled": True}), BLIP, "b")


def test_the_agent_expects_the_language_the_model_writes() -> None:
    base = AgentSettings()
    assert lang.agent_settings(base, "de", CHAT).language == "de"
    assert lang.agent_settings(base, "de", BLIP).language == "en"  # translated after the agent
    assert lang.agent_settings(AgentSettings(language=None), "de", CHAT).language is None
    assert not lang.agent_settings(AgentSettings(language=""), "de", CHAT).language  # DESCRY_AGENT__LANGUAGE=


def test_the_language_check_knows_english_for_languages_without_a_word_list() -> None:
    english = "A brown dog runs on the beach with a red ball in its mouth near the water."
    swedish = "En brun hund springer på stranden med en röd boll i munnen nära vattnet."
    assert quality.Problem.wrong_language in quality.judge(english, language="sv")
    assert quality.Problem.wrong_language not in quality.judge(swedish, language="sv")
    assert quality.Problem.wrong_language in quality.judge(english, language="de")


def test_tags_are_lemmatised_in_the_language_without_its_function_words() -> None:
    tagger = lang.Taggers(TagSettings()).get("de-AT")
    names = {t.name for t in tagger.tags("Zwei braune Hunde laufen am Strand neben den Booten und dem Meer.")}
    assert {"hund", "strand", "boot", "meer"} <= {w for n in names for w in n.split()}
    assert not names & {"am", "den", "dem", "und", "neben", "zwei"}
    english = lang.Taggers(TagSettings()).get("en")
    assert "dog" in {t.name for t in english.tags("Two brown dogs run on the beach.")}
    assert lang.Taggers(TagSettings()).get("de") is not english


def test_unknown_languages_keep_words_as_written() -> None:
    assert Lemmatizer("ja")("cats") == "cats"
    assert Lemmatizer("en")("cats") == "cat"


def test_the_enhancer_is_told_to_answer_in_the_language() -> None:
    assert system_prompt(None) == SYSTEM_PROMPT == system_prompt("en-US")
    german = system_prompt("de")
    assert german != SYSTEM_PROMPT and "German" in german and "translate" in german


def test_a_translation_that_did_not_happen_fails_the_image() -> None:
    lang.check_translation("Ein brauner Hund läuft am Strand mit dem roten Ball.", True, "de", [])
    with pytest.raises(RemoteModelError):
        lang.check_translation("A brown dog runs on the beach with the red ball in the sun.", True, "de", [])
    with pytest.raises(RemoteModelError) as info:
        lang.check_translation("a dog", False, "de", ["Enhancement skipped: the server is down."])
    assert "server is down" in str(info.value)


async def test_a_ray_batch_is_refused_before_ray_starts(clean_env: None, tmp_path: Path) -> None:
    from descry.batch import BatchOutput, run_batch
    from descry.schemas import ImageRef, SourceKind

    settings = Settings(data_dir=tmp_path / "data", model={"name": "florence-2-base"})
    refs = [ImageRef(kind=SourceKind.path, name="a.jpg", uri=str(tmp_path / "a.jpg"))]
    out = tmp_path / "results.jsonl"
    with pytest.raises(CapabilityError):
        await run_batch(settings, CaptionRequest(language="de"), refs, BatchOutput(out), engine="ray")
    assert not out.exists()
    lang.check_configured(CaptionRequest(language="de", enhance=True), settings)
