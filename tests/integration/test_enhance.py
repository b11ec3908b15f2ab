"""The LLM polish against a real local OpenAI-compatible server: success, down, slow, junk."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from descry.config import EnhanceSettings
from descry.enrich.enhance import SYSTEM_PROMPT, TRACE_ENHANCED, TRACE_KEPT_ORIGINAL, Enhancer
from tests.fakes.openai_server import FakeOpenAIServer, Rule

MODEL = "openai/gpt-oss-20b"
CAPTION = "a brown dog runs on a sandy beach with a red ball"
POLISHED = "A brown dog runs across a sandy beach carrying a red ball."


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(models=[MODEL]) as srv:
        yield srv


@pytest.fixture
def fake(server: FakeOpenAIServer) -> FakeOpenAIServer:
    server.reset()
    return server


Make = Callable[..., Enhancer]


@pytest.fixture
async def enhancer() -> AsyncIterator[Make]:
    """Builds enhancers for a test and closes their HTTP clients after it."""
    made: list[Enhancer] = []

    def make(base_url: str, **kw: object) -> Enhancer:
        options = {"model": MODEL, "base_url": base_url, "timeout": 2.0, "max_retries": 0, **kw}
        made.append(Enhancer(EnhanceSettings(enabled=True, **options)))  # type: ignore[arg-type]
        return made[-1]

    yield make
    for polish in made:
        await polish.aclose()


def assert_kept(outcome: object, reason_part: str | None = None) -> None:
    assert outcome.enhanced is False  # type: ignore[attr-defined]
    assert outcome.caption == CAPTION  # type: ignore[attr-defined]
    assert outcome.original_caption == CAPTION  # type: ignore[attr-defined]
    assert len(outcome.trace) == 1 and outcome.trace[0].startswith(TRACE_KEPT_ORIGINAL)  # type: ignore[attr-defined]
    if reason_part:
        assert reason_part in outcome.trace[0]  # type: ignore[attr-defined]


async def test_success_keeps_the_original(fake: FakeOpenAIServer, enhancer: Make) -> None:
    fake.add(Rule(reply=POLISHED))
    polish = enhancer(fake.base_url, reasoning_effort="high")
    outcome = await polish.enhance(CAPTION, ["dog", "beach", "animals"])
    await polish.aclose()
    assert outcome.enhanced is True
    assert outcome.caption == POLISHED
    assert outcome.original_caption == CAPTION
    assert len(outcome.trace) == 1 and outcome.trace[0].startswith(TRACE_ENHANCED)
    (request,) = fake.chat_requests
    body = request.body or {}
    assert body["model"] == MODEL
    assert body["reasoning_effort"] == "high"
    assert body["messages"][0] == {"role": "system", "content": SYSTEM_PROMPT}
    assert CAPTION in body["messages"][1]["content"] and "beach" in body["messages"][1]["content"]


async def test_preamble_in_the_reply_is_removed(fake: FakeOpenAIServer, enhancer: Make) -> None:
    fake.add(Rule(reply=f"Here is the improved caption: {POLISHED}"))
    outcome = await enhancer(fake.base_url).enhance(CAPTION, [])
    assert outcome.enhanced is True and outcome.caption == POLISHED


async def test_server_down_keeps_the_original(enhancer: Make) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    outcome = await enhancer(f"http://127.0.0.1:{port}/v1").enhance(CAPTION, ["dog"])
    assert_kept(outcome, "failed")


async def test_server_error_keeps_the_original(fake: FakeOpenAIServer, enhancer: Make) -> None:
    fake.add(Rule(status=500))
    assert_kept(await enhancer(fake.base_url).enhance(CAPTION, []), "failed")


async def test_unknown_model_keeps_the_original(fake: FakeOpenAIServer, enhancer: Make) -> None:
    assert_kept(await enhancer(fake.base_url, model="not-served").enhance(CAPTION, []), "not-served")


async def test_slow_server_keeps_the_original_within_the_timeout(fake: FakeOpenAIServer, enhancer: Make) -> None:
    fake.add(Rule(delay=5.0))
    t0 = time.perf_counter()
    outcome = await enhancer(fake.base_url, timeout=0.5).enhance(CAPTION, [])
    assert time.perf_counter() - t0 < 3.0
    assert_kept(outcome)


@pytest.mark.parametrize(
    ("reply", "finish", "reason"),
    [
        ("", None, "empty"),
        ("   ", None, "empty"),
        (POLISHED + " " + "It is a lovely and very sunny day at the seaside. " * 20, None, "longer"),
        ("I'm sorry, but I can't help with that request.", None, "refused"),
        ("- a brown dog\n- a sandy beach\n- a red ball", None, "markdown"),
        ("a dog on a beach a dog on a beach a dog on a beach a dog", None, "repeated"),
        (POLISHED, "length", "cut off"),
        (CAPTION, None, "unchanged"),
    ],
)
async def test_junk_keeps_the_original(
    fake: FakeOpenAIServer, reply: str, finish: str | None, reason: str, enhancer: Make
) -> None:
    fake.add(Rule(reply=reply, finish_reason=finish))
    assert_kept(await enhancer(fake.base_url).enhance(CAPTION, ["dog"]), reason)


async def test_empty_caption_is_not_sent(fake: FakeOpenAIServer, enhancer: Make) -> None:
    outcome = await enhancer(fake.base_url).enhance("", ["dog"])
    assert outcome.enhanced is False and outcome.caption == ""
    assert fake.chat_requests == []
