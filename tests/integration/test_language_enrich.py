"""Captions in the user's language through the library object: instruction-following models are asked in it,
English-only models are translated by the enhancement LLM (a real local OpenAI-compatible server), and a
language nothing can write is refused before any work."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from descry import CaptionRequest, Descry, Settings
from descry.backends.base import Capabilities, Generation, ModelSpec, Prompted
from descry.engine.pipeline import Engine
from descry.errors import CapabilityError
from tests.conftest import image_bytes
from tests.fakes.echo_backend import EchoBackend
from tests.fakes.openai_server import FakeOpenAIServer, Rule

LLM = "openai/gpt-oss-20b"
ENGLISH = "A brown dog runs along a sandy beach with a red ball in its mouth."
GERMAN = "Ein brauner Hund läuft mit einem roten Ball im Maul am Sandstrand entlang."


class EnglishOnly(EchoBackend):
    """A captioner that cannot follow instructions (like BLIP): always the same English caption."""

    name = "english-only"
    capabilities = Capabilities(instruct=False, prompt=True)

    def __init__(self) -> None:
        super().__init__(ModelSpec(model_id="english-only", backend="english-only"))
        self.prompts: list[str | None] = []

    def forward(self, batch: Any) -> Any:
        self.batches.append(len(batch))
        self.prompts.extend(item.prompt for item in batch)
        return [ENGLISH for _ in batch]


class Chat(EchoBackend):
    """An instruction-following captioner that answers in German when asked to, and records its prompts."""

    def __init__(self) -> None:
        super().__init__(ModelSpec(model_id="chat", backend="echo", default_prompt="Describe this image."))
        self.prompts: list[str | None] = []

    def preprocess(self, items: Sequence[Prompted]) -> Any:
        self.prompts.extend(item.prompt for item in items)
        return list(items)

    def postprocess(self, batch: Any, raw: Any) -> list[Generation]:
        return [Generation(text=GERMAN if "German" in (item.prompt or "") else ENGLISH) for item in batch]


@pytest.fixture(scope="module")
def llm() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(models=[LLM]) as server:
        yield server


def settings_for(tmp: Any, llm: FakeOpenAIServer | None = None, **extra: Any) -> Settings:
    enhance = {"enabled": llm is not None, "model": LLM, "base_url": llm.base_url if llm else "http://127.0.0.1:9/v1"}
    return Settings(data_dir=tmp / "data", enhance={**enhance, "timeout": 5.0, "max_retries": 0}, **extra)


async def test_instruct_models_are_asked_in_the_language_and_say_so(tmp_path: Any) -> None:
    backend = Chat()
    settings = settings_for(tmp_path)
    async with Descry(settings, engine=Engine(settings, backend)) as d:
        result = await d.enrich(image_bytes("JPEG"), CaptionRequest(language="de"))
        english = await d.enrich(image_bytes("JPEG"), CaptionRequest())
    enrichment = result.enrichment
    assert enrichment is not None and english.enrichment is not None
    assert enrichment.language == "de" and english.enrichment.language == "en"
    assert enrichment.caption == GERMAN and len(enrichment.attempts) == 1
    assert "German" in (enrichment.attempts[0].prompt or "")
    assert backend.prompts == ["Describe this image. Answer in German.", "Describe this image."]
    tag_words = {w for t in enrichment.tags for w in t.name.split()}
    assert {"hund", "ball"} <= tag_words and not tag_words & {"ein", "einem", "mit", "am"}


async def test_the_setting_is_the_default_and_the_agent_retries_a_caption_in_the_wrong_language(
    tmp_path: Any,
) -> None:
    class Stubborn(Chat):
        def postprocess(self, batch: Any, raw: Any) -> list[Generation]:
            first = len(self.prompts) == 1
            return [Generation(text=ENGLISH if first else GERMAN) for _ in batch]

    backend = Stubborn()
    settings = settings_for(tmp_path, language="de")
    async with Descry(settings, engine=Engine(settings, backend)) as d:
        enrichment = (await d.enrich(image_bytes("JPEG"))).enrichment
    assert enrichment is not None and enrichment.language == "de"
    assert len(enrichment.attempts) == 2 and enrichment.attempts[0].problems == ["wrong_language"]
    assert enrichment.chosen_attempt == 1 and enrichment.caption == GERMAN


async def test_english_only_models_are_translated_by_the_llm(tmp_path: Any, llm: FakeOpenAIServer) -> None:
    llm.reset()
    llm.add(Rule(reply=GERMAN))
    backend = EnglishOnly()
    settings = settings_for(tmp_path, llm)
    async with Descry(settings, engine=Engine(settings, backend)) as d:
        enrichment = (await d.enrich(image_bytes("JPEG"), CaptionRequest(language="de"))).enrichment
    assert enrichment is not None
    assert (enrichment.caption, enrichment.original_caption, enrichment.enhanced) == (GERMAN, ENGLISH, True)
    assert enrichment.language == "de"
    assert backend.prompts == [None]  # BLIP-like models are never sent the language sentence
    assert len(llm.chat_requests) == 1 and "German" in llm.chat_requests[0].body["messages"][0]["content"]  # type: ignore[index]
    assert "hund" in {w for t in enrichment.tags for w in t.name.split()}  # tagged from the translation


async def test_a_failed_translation_fails_the_image_and_writes_nothing(tmp_path: Any, llm: FakeOpenAIServer) -> None:
    llm.reset()
    llm.add(Rule(reply="A brown dog is running along the sandy beach with a red ball in its mouth."))
    llm.add(Rule(status=500, times=None))
    settings = settings_for(tmp_path, llm)
    async with Descry(settings, engine=Engine(settings, EnglishOnly())) as d:
        results = [
            r async for r in d.enrich_many([image_bytes("JPEG"), image_bytes("PNG")], CaptionRequest(language="fr"))
        ]
    assert [r.ok for r in results] == [False, False]
    assert {r.error.code for r in results if r.error} == {"remote_model_error"}


async def test_without_an_llm_a_language_an_english_only_model_cannot_write_is_refused_before_any_work(
    tmp_path: Any,
) -> None:
    backend = EnglishOnly()
    settings = settings_for(tmp_path)
    async with Descry(settings, engine=Engine(settings, backend)) as d:
        with pytest.raises(CapabilityError) as one:
            await d.enrich(image_bytes("JPEG"), CaptionRequest(language="de"))
        with pytest.raises(CapabilityError):
            _ = [r async for r in d.enrich_many([image_bytes("JPEG")] * 3, CaptionRequest(language="de"))]
        english = await d.enrich(image_bytes("JPEG"), CaptionRequest(language="en"))
    assert one.value.code == "unsupported_request"
    assert backend.batches == [1] and backend.prompts == [None]  # only the English request reached the model
    assert english.enrichment is not None and english.enrichment.language == "en"
