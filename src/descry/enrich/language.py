"""The caption language: which one a request gets, how a model is asked for it, and when a caption
must be translated.

A request's ``language`` (BCP 47: ``de``, ``pt-BR``) wins; else ``DESCRY_LANGUAGE``; else, for
settings written before that existed, ``DESCRY_AGENT__LANGUAGE`` or ``DESCRY_TAGS__LANGUAGE``; else
English. Instruction-following models are asked to answer in the language (one sentence after the
prompt); the agent's language check expects it; tags are lemmatised in it. Models that cannot follow
instructions (BLIP, Florence-2) caption in English, so their caption is translated by the enhancement
LLM, and a request for another language without one is refused before any work.
"""

from __future__ import annotations

from dataclasses import replace

from descry.backends.base import Capabilities, ModelSpec
from descry.config import AgentSettings, Settings, TagSettings
from descry.enrich import quality
from descry.enrich.tags import Tagger
from descry.errors import CapabilityError, RemoteModelError
from descry.schemas import CaptionRequest

ENGLISH = "en"
NAMES = {
    "ar": "Arabic",
    "bg": "Bulgarian",
    "ca": "Catalan",
    "cs": "Czech",
    "da": "Danish",
    "de": "German",
    "el": "Greek",
    "en": "English",
    "es": "Spanish",
    "et": "Estonian",
    "fa": "Persian",
    "fi": "Finnish",
    "fr": "French",
    "he": "Hebrew",
    "hi": "Hindi",
    "hr": "Croatian",
    "hu": "Hungarian",
    "id": "Indonesian",
    "it": "Italian",
    "ja": "Japanese",
    "ko": "Korean",
    "lt": "Lithuanian",
    "lv": "Latvian",
    "nb": "Norwegian Bokmål",
    "nl": "Dutch",
    "nn": "Norwegian Nynorsk",
    "no": "Norwegian",
    "pl": "Polish",
    "pt": "Portuguese",
    "ro": "Romanian",
    "ru": "Russian",
    "sk": "Slovak",
    "sl": "Slovenian",
    "sr": "Serbian",
    "sv": "Swedish",
    "th": "Thai",
    "tr": "Turkish",
    "uk": "Ukrainian",
    "vi": "Vietnamese",
    "zh": "Chinese",
}
VARIANTS = {"pt-br": "Brazilian Portuguese", "pt-pt": "European Portuguese", "zh-hans": "Simplified Chinese"}


def primary(tag: str) -> str:
    """The primary subtag, lowercase: ``pt-BR`` → ``pt``."""
    return tag.split("-", 1)[0].lower()


def language_name(tag: str) -> str:
    """The language's English name for a prompt (``German``), or the tag itself when it is not known."""
    return VARIANTS.get(tag.lower()) or NAMES.get(primary(tag), tag)


def is_english(tag: str | None) -> bool:
    return tag is None or primary(tag) == ENGLISH


def default_language(settings: Settings) -> str:
    """``DESCRY_LANGUAGE``; else the older per-part settings when one was set; else English."""
    if "language" in settings.model_fields_set:
        return settings.language
    for section in (settings.agent, settings.tags):
        if "language" in section.model_fields_set and section.language:
            return section.language
    return settings.language


def request_language(request: CaptionRequest, settings: Settings) -> str:
    """The language the caption of ``request`` is wanted in."""
    return request.language or default_language(settings)


def needs_translation(language: str, caps: Capabilities) -> bool:
    """Whether a model's caption must be translated: it cannot be asked for the language."""
    return not caps.instruct and not is_english(language)


def enhancing(request: CaptionRequest, settings: Settings) -> bool:
    return request.enhance if request.enhance is not None else settings.enhance.enabled


def check(request: CaptionRequest, settings: Settings, caps: Capabilities, model: str) -> None:
    """Refuse, before any work, a language that the model cannot write and no LLM can translate into."""
    language = request_language(request, settings)
    if needs_translation(language, caps) and not enhancing(request, settings):
        raise CapabilityError(
            f"model {model} writes English only; a {language_name(language)} ({language}) caption needs "
            "the enhancement LLM to translate it",
            hint="set DESCRY_ENHANCE__ENABLED=true and DESCRY_ENHANCE__BASE_URL, or pick an "
            "instruction-following model (descry models)",
        )


def ask_in(prompt: str | None, language: str) -> str | None:
    """``prompt`` with one sentence asking for the answer in ``language`` (unchanged for English)."""
    if prompt is None or is_english(language):
        return prompt
    sentence = f"Answer in {language_name(language)}."
    return prompt if sentence in prompt else f"{prompt.rstrip()} {sentence}"


def localised(
    spec: ModelSpec, request: CaptionRequest, caps: Capabilities, language: str
) -> tuple[ModelSpec, CaptionRequest]:
    """The spec and request an instruction-following model is prompted from, asking for ``language``."""
    if not caps.instruct or is_english(language):
        return spec, request
    spec = replace(
        spec,
        default_prompt=ask_in(spec.default_prompt, language),
        detailed_prompt=ask_in(spec.detailed_prompt, language),
    )
    return spec, request.model_copy(update={"prompt": ask_in(request.prompt, language)})


def agent_settings(settings: AgentSettings, language: str, caps: Capabilities) -> AgentSettings:
    """What the agent's language check expects: the language, or English from a model that is translated
    afterwards; an empty ``DESCRY_AGENT__LANGUAGE`` keeps the check off."""
    if not settings.language:  # None, or empty from DESCRY_AGENT__LANGUAGE=
        return settings
    expected = ENGLISH if needs_translation(language, caps) else language
    return settings.model_copy(update={"language": expected})


def check_translation(caption: str, enhanced: bool, language: str, trace: list[str]) -> None:
    """Fail an image whose caption did not come back in ``language`` (nothing is written for it)."""
    found = quality.detect_language(quality.words(caption), primary(language)) if enhanced else None
    if enhanced and not found:
        return
    why = trace[-1] if trace and not enhanced else f"the reply looks like {language_name(found or '')}"
    raise RemoteModelError(f"the caption could not be translated into {language_name(language)}: {why}")


class Taggers:
    """One Tagger per language (lemmas and stop words of that language), made the first time it is needed."""

    def __init__(self, settings: TagSettings) -> None:
        self.settings = settings
        self._made: dict[str, Tagger] = {}

    def get(self, language: str) -> Tagger:
        key = primary(language)
        if key not in self._made:
            self._made[key] = Tagger(self.settings.model_copy(update={"language": key}))
        return self._made[key]


def check_configured(request: CaptionRequest, settings: Settings) -> None:
    """``check`` against the configured model without loading it, for a face with no engine of its own
    yet (the Ray runner, whose replicas load the model later)."""
    from descry.backends.registry import create_backend  # the registry reads entry points: only when needed

    backend = create_backend(settings.model, test_mode=settings.test_mode)
    check(request, settings, backend.capabilities, backend.model_name)
