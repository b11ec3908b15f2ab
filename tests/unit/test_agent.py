"""CaptionAgent driven by scripted generate functions: attempts, parameter changes, choice, trace."""

from __future__ import annotations

from dataclasses import replace

import pytest
from PIL import Image

from descry.backends.base import DEFAULT_PARAMS, Capabilities, Generation, ModelSpec, Prompted
from descry.config import AgentSettings
from descry.enrich import agent as A
from descry.enrich.agent import CaptionAgent
from descry.errors import RemoteModelError
from descry.schemas import CaptionRequest, GenerationParams

GOOD = "A brown dog runs along a sandy beach with a red ball in its mouth."
SHORT = "a dog"
CUT = "A brown dog runs along a sandy beach with a"
LOOP = "a dog on a beach a dog on a beach a dog on a beach a dog on a beach"
REFUSAL = "I'm sorry, but I cannot help with describing this image."

CHAT = ModelSpec(
    model_id="tiny-chat",
    backend="scripted",
    default_prompt="Describe this image in one sentence.",
    detailed_prompt="Describe this image in detail.",
    params=DEFAULT_PARAMS.model_copy(update={"max_new_tokens": 96}),
)
CHAT_CAPS = Capabilities(instruct=True, prompt=True)
FLORENCE = ModelSpec(
    model_id="tiny-florence",
    backend="scripted",
    default_task="<CAPTION>",
    detailed_task="<MORE_DETAILED_CAPTION>",
    params=DEFAULT_PARAMS.model_copy(update={"max_new_tokens": 64, "num_beams": 3}),
)
FLORENCE_CAPS = Capabilities(
    instruct=False,
    prompt=False,
    tasks=frozenset({"<CAPTION>", "<DETAILED_CAPTION>", "<MORE_DETAILED_CAPTION>", "<OD>"}),
)
BLIP = ModelSpec(
    model_id="tiny-blip", backend="scripted", params=DEFAULT_PARAMS.model_copy(update={"max_new_tokens": 40})
)
BLIP_CAPS = Capabilities(instruct=False, prompt=True)


class Script:
    """Returns the given generations in order and records every Prompted it was called with."""

    def __init__(self, *outputs: Generation | str | Exception) -> None:
        self.outputs = list(outputs)
        self.calls: list[Prompted] = []

    async def __call__(self, item: Prompted) -> Generation:
        self.calls.append(item)
        out = self.outputs.pop(0)
        if isinstance(out, Exception):
            raise out
        if isinstance(out, str):
            return Generation(text=out, output_tokens=len(out.split()))
        return out


def cut(text: str = CUT) -> Generation:
    return Generation(text=text, output_tokens=len(text.split()), finish_reason="length")


def agent(
    script: Script, spec: ModelSpec = CHAT, caps: Capabilities = CHAT_CAPS, **settings: object
) -> CaptionAgent:
    return CaptionAgent(script, spec, caps, AgentSettings(**settings))  # type: ignore[arg-type]


@pytest.fixture
def image() -> Image.Image:
    return Image.new("RGB", (32, 24), (10, 120, 200))


def kinds(trace: list[str]) -> list[str]:
    """Each trace sentence reduced to the TRACE_* constant it starts with."""
    prefixes = {v: k for k, v in vars(A).items() if k.startswith("TRACE_")}
    out = []
    for line in trace:
        match = [name for prefix, name in prefixes.items() if line.startswith(prefix)]
        assert len(match) == 1, line
        out.append(match[0])
    return out


async def test_good_first_caption_is_kept(image: Image.Image) -> None:
    script = Script(GOOD)
    outcome = await agent(script).run(image, CaptionRequest())
    assert outcome.caption == GOOD
    assert len(outcome.attempts) == 1 and outcome.chosen == 0
    assert outcome.attempts[0].problems == []
    assert outcome.attempts[0].prompt == CHAT.default_prompt
    assert kinds(outcome.trace) == ["TRACE_START", "TRACE_INITIAL", "TRACE_PASSED", "TRACE_KEPT"]
    assert outcome.generation.text == GOOD
    assert len(script.calls) == 1


async def test_each_problem_changes_the_parameters(image: Image.Image) -> None:
    script = Script(SHORT, cut(), LOOP, REFUSAL, GOOD)
    outcome = await agent(script, max_attempts=5).run(image, CaptionRequest())
    attempts = outcome.attempts
    assert len(attempts) == 5 and len(script.calls) == 5
    assert [a.problems[0] for a in attempts[:4]] == ["too_short", "cut_off", "repetitive", "refusal"]
    assert attempts[4].problems == []
    assert outcome.chosen == 4 and outcome.caption == GOOD

    tokens = [a.params["max_new_tokens"] for a in attempts]
    assert tokens[1] >= 2 * tokens[0]  # verbose mode for the short caption
    assert attempts[1].prompt != attempts[0].prompt  # ... with a more detailed prompt
    assert tokens[2] > tokens[1]  # more tokens for the cut-off caption
    assert attempts[2].params.get("repetition_penalty", 1.0) == 1.0
    assert attempts[3].params["repetition_penalty"] == 1.3  # the loop
    assert attempts[3].params["num_beams"] == 3
    assert A.STRICT_SUFFIX in (attempts[4].prompt or "")  # the refusal
    assert A.STRICT_SUFFIX not in (attempts[3].prompt or "")
    assert [c.params.max_new_tokens for c in script.calls] == tokens

    names = kinds(outcome.trace)
    assert names.count("TRACE_RETRY") == 4
    assert names.count("TRACE_PROBLEMS") == 4
    assert names[:2] == ["TRACE_START", "TRACE_INITIAL"]
    assert names.count("TRACE_NEW") == 4
    assert names[-2:] == ["TRACE_PASSED", "TRACE_KEPT"]
    assert outcome.trace[-1].startswith(f"{A.TRACE_KEPT} 5 of 5")


async def test_attempt_limit_keeps_the_best(image: Image.Image) -> None:
    script = Script(SHORT, "a brown dog", "a dog on sand")
    outcome = await agent(script).run(image, CaptionRequest())
    assert len(outcome.attempts) == 3
    assert all(a.problems == ["too_short"] for a in outcome.attempts)
    assert outcome.chosen == 2  # equally bad, so the longest
    assert outcome.caption == "a dog on sand"
    names = kinds(outcome.trace)
    assert names.count("TRACE_RETRY") == 2
    assert names[-2:] == ["TRACE_LIMIT", "TRACE_KEPT"]


async def test_less_severe_problem_beats_a_later_worse_one(image: Image.Image) -> None:
    script = Script(cut("A brown dog runs along a sandy beach near the water and"), REFUSAL)
    outcome = await agent(script, max_attempts=2).run(image, CaptionRequest())
    assert outcome.chosen == 0
    assert outcome.attempts[0].problems == ["cut_off"]
    assert outcome.generation.finish_reason == "length"


async def test_seed_max_tokens_below_15_retries_with_more_tokens(image: Image.Image) -> None:
    """MAX_TOKENS=10 (spec.params.max_new_tokens): the first caption is cut short, the retry is not."""

    async def model(item: Prompted) -> Generation:
        words = GOOD.split()
        limit = item.params.max_new_tokens or 0
        if limit < len(words):
            return Generation(text=" ".join(words[:limit]), output_tokens=limit, finish_reason="length")
        return Generation(text=GOOD, output_tokens=len(words))

    spec = replace(CHAT, params=GenerationParams(max_new_tokens=10).merged_over(CHAT.params))
    outcome = await CaptionAgent(model, spec, CHAT_CAPS, AgentSettings()).run(image, CaptionRequest())
    assert [a.params["max_new_tokens"] for a in outcome.attempts] == [10, 48]
    assert outcome.attempts[0].problems == ["cut_off"]
    assert outcome.chosen == 1 and outcome.caption == GOOD


async def test_preamble_is_cleaned_without_a_retry(image: Image.Image) -> None:
    script = Script(f"This image shows {GOOD[0].lower()}{GOOD[1:]}")
    outcome = await agent(script).run(image, CaptionRequest())
    assert len(outcome.attempts) == 1 and len(script.calls) == 1
    assert outcome.caption == GOOD
    assert outcome.attempts[0].problems == []
    assert kinds(outcome.trace) == [
        "TRACE_START",
        "TRACE_INITIAL",
        "TRACE_CLEANED",
        "TRACE_PASSED",
        "TRACE_KEPT",
    ]


async def test_task_models_climb_the_caption_task_ladder(image: Image.Image) -> None:
    script = Script(SHORT, "a brown dog", GOOD)
    outcome = await agent(script, FLORENCE, FLORENCE_CAPS).run(image, CaptionRequest())
    assert [a.task for a in outcome.attempts] == [
        "<CAPTION>",
        "<DETAILED_CAPTION>",
        "<MORE_DETAILED_CAPTION>",
    ]
    assert all(c.prompt is None for c in script.calls)
    assert outcome.attempts[1].params["max_new_tokens"] == 128
    assert outcome.chosen == 2


async def test_detailed_request_uses_the_detailed_task_and_prompt(image: Image.Image) -> None:
    script = Script(GOOD, GOOD)
    detailed = CaptionRequest(detail="detailed", params=GenerationParams(max_new_tokens=200, top_p=0.9))
    await agent(script, FLORENCE, FLORENCE_CAPS).run(image, detailed)
    await agent(script).run(image, detailed)
    florence, chat = script.calls
    assert florence.task == "<MORE_DETAILED_CAPTION>"
    assert florence.params.num_beams == 3 and florence.params.max_new_tokens == 200
    assert chat.prompt == CHAT.detailed_prompt and chat.params.top_p == 0.9


async def test_captioning_models_without_instructions_get_longer_decoding(image: Image.Image) -> None:
    script = Script(SHORT, GOOD)
    outcome = await agent(script, BLIP, BLIP_CAPS).run(image, CaptionRequest())
    first, second = script.calls
    assert first.prompt is None and second.prompt is None
    assert second.params.min_new_tokens == 10
    assert second.params.max_new_tokens == 80
    assert outcome.chosen == 1


async def test_nothing_left_to_change_stops_early(image: Image.Image) -> None:
    german = "Ein brauner Hund läuft am Strand mit dem Ball und der Sonne."
    script = Script(german, german, german)
    outcome = await agent(script, BLIP, BLIP_CAPS).run(image, CaptionRequest())
    assert len(outcome.attempts) == 2  # beam search once, then nothing else to try
    assert outcome.attempts[1].params["num_beams"] == 3
    assert kinds(outcome.trace)[-2:] == ["TRACE_NO_CHANGE", "TRACE_KEPT"]


async def test_wrong_language_asks_for_the_language(image: Image.Image) -> None:
    script = Script("Ein brauner Hund läuft am Strand mit dem Ball und der Sonne.", GOOD)
    outcome = await agent(script).run(image, CaptionRequest())
    assert "English" in (script.calls[1].prompt or "")
    assert outcome.chosen == 1


async def test_refusal_asks_for_more_of_the_image_where_the_model_has_crops(image: Image.Image) -> None:
    spec = replace(CHAT, options={"num_crops": 1, "max_pixels": 1000})
    script = Script(REFUSAL, GOOD)
    await agent(script, spec).run(image, CaptionRequest())
    assert script.calls[0].options == {}
    assert script.calls[1].options == {"num_crops": 4, "max_pixels": 2000}


async def test_non_caption_tasks_are_not_judged(image: Image.Image) -> None:
    script = Script(Generation(text="dog<loc_1><loc_2>", structured={"labels": ["dog"]}))
    outcome = await agent(script, FLORENCE, FLORENCE_CAPS).run(image, CaptionRequest(task="<OD>"))
    assert len(outcome.attempts) == 1 and outcome.attempts[0].task == "<OD>"
    assert kinds(outcome.trace) == ["TRACE_START", "TRACE_SKIPPED"]
    assert outcome.generation.structured == {"labels": ["dog"]}


async def test_disabled_agent_makes_one_attempt(image: Image.Image) -> None:
    script = Script(SHORT)
    outcome = await agent(script, enabled=False).run(image, CaptionRequest())
    assert outcome.caption == SHORT and len(outcome.attempts) == 1
    assert kinds(outcome.trace)[-1] == "TRACE_SKIPPED"


async def test_failed_retry_keeps_the_earlier_attempt(image: Image.Image) -> None:
    script = Script(SHORT, RemoteModelError("server went away"))
    outcome = await agent(script).run(image, CaptionRequest())
    assert len(outcome.attempts) == 1 and outcome.caption == SHORT
    assert kinds(outcome.trace)[-2:] == ["TRACE_FAILED", "TRACE_KEPT"]


async def test_first_attempt_errors_propagate(image: Image.Image) -> None:
    with pytest.raises(RemoteModelError):
        await agent(Script(RemoteModelError("down"))).run(image, CaptionRequest())


async def test_unfinished_sentence_is_trimmed_when_retries_do_not_help(image: Image.Image) -> None:
    text = "A brown dog runs along a sandy beach. It carries a red ball in"
    script = Script(cut(text), cut(text))
    outcome = await agent(script, max_attempts=2).run(image, CaptionRequest())
    assert outcome.caption == "A brown dog runs along a sandy beach."
    assert outcome.attempts[outcome.chosen].caption == text
    assert "TRACE_TRIMMED" in kinds(outcome.trace)


async def test_user_prompt_is_kept_and_extended(image: Image.Image) -> None:
    script = Script(SHORT, GOOD)
    await agent(script).run(image, CaptionRequest(prompt="What animal is this?"))
    assert script.calls[0].prompt == "What animal is this?"
    assert (script.calls[1].prompt or "").startswith("What animal is this?")
