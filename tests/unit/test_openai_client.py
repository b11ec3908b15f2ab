"""ChatClient / AsyncChatClient against httpx.MockTransport: parsing, error mapping, retry policy."""

from __future__ import annotations

import email.utils
import json
import random
import time
from collections.abc import Callable

import httpx
import pytest

from descry.errors import ConfigError, InputError, ModelNotFound, RemoteModelError
from descry.openai_client import AsyncChatClient, ChatClient, RetryPolicy, parse_retry_after

BASE = "http://llm.test/v1"
MESSAGES = [{"role": "user", "content": "hello"}]

Handler = Callable[[httpx.Request], httpx.Response]


def completion(text: str = "a cat", finish: str = "stop", **message: object) -> dict[str, object]:
    return {
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text, **message}, "finish_reason": finish}
        ],
        "usage": {"prompt_tokens": 7, "completion_tokens": 2},
    }


def scripted(*responses: httpx.Response | Exception) -> tuple[Handler, list[httpx.Request]]:
    """A handler that answers with ``responses`` in turn (the last one repeats) and records requests."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = responses[min(len(seen), len(responses)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer

    return handler, seen


def client(handler: Handler, **kwargs: object) -> ChatClient:
    opts: dict[str, object] = {"max_retries": 2, "backoff_base": 0.001, "backoff_max": 0.01, "seed": 1}
    opts.update(kwargs)
    return ChatClient(BASE, transport=httpx.MockTransport(handler), **opts)  # type: ignore[arg-type]


def test_chat_builds_the_body_and_parses_the_reply() -> None:
    handler, seen = scripted(httpx.Response(200, json=completion(reasoning_content="thought")))
    with client(handler, api_key=None) as c:
        result = c.chat("m", MESSAGES, max_tokens=5, temperature=0.0, extra={"reasoning_effort": "low"})
    body = json.loads(seen[0].content)
    assert seen[0].url == httpx.URL(f"{BASE}/chat/completions")
    assert body["model"] == "m" and body["messages"] == MESSAGES
    assert body["max_tokens"] == 5 and body["temperature"] == 0.0 and "top_p" not in body
    assert body["reasoning_effort"] == "low" and body["stream"] is False
    assert "authorization" not in seen[0].headers
    assert (result.text, result.prompt_tokens, result.completion_tokens) == ("a cat", 7, 2)
    assert result.finish_reason == "stop" and result.reasoning == "thought" and result.attempts == 1
    assert result.raw["choices"][0]["index"] == 0


def test_api_key_is_sent_as_bearer_token() -> None:
    handler, seen = scripted(httpx.Response(200, json=completion()))
    with client(handler, api_key="sekret") as c:
        c.chat("m", MESSAGES)
    assert seen[0].headers["authorization"] == "Bearer sekret"


def test_content_parts_and_null_content_become_text() -> None:
    parts = completion()
    parts["choices"][0]["message"]["content"] = [{"type": "text", "text": "a "}, {"type": "text", "text": "dog"}]  # type: ignore[index]
    handler, _ = scripted(httpx.Response(200, json=parts), httpx.Response(200, json=completion(text=None)))  # type: ignore[arg-type]
    with client(handler) as c:
        assert c.chat("m", MESSAGES).text == "a dog"
        assert c.chat("m", MESSAGES).text == ""


def test_list_models_reads_ids() -> None:
    handler, seen = scripted(httpx.Response(200, json={"object": "list", "data": [{"id": "a"}, {"id": "b"}]}))
    with client(handler) as c:
        assert c.list_models() == ["a", "b"]
    assert seen[0].method == "GET" and seen[0].url.path == "/v1/models"


@pytest.mark.parametrize(
    "first",
    [
        httpx.Response(429, json={"error": {"message": "busy"}}),
        httpx.Response(503, text="upstream down"),
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
    ],
    ids=["429", "503", "connect", "timeout"],
)
def test_retryable_failures_are_retried_then_succeed(first: httpx.Response | Exception) -> None:
    handler, seen = scripted(first, first, httpx.Response(200, json=completion()))
    with client(handler, max_retries=2) as c:
        result = c.chat("m", MESSAGES)
    assert len(seen) == 3 and result.attempts == 3 and result.text == "a cat"


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (httpx.Response(429, json={"error": {"message": "busy"}}), "rate limiting"),
        (httpx.Response(500, json={"error": {"message": "boom"}}), "HTTP 500"),
        (httpx.ConnectError("refused"), "cannot reach"),
        (httpx.ReadTimeout("slow"), "did not answer"),
    ],
    ids=["429", "500", "connect", "timeout"],
)
def test_gives_up_after_max_retries(answer: httpx.Response | Exception, words: str) -> None:
    handler, seen = scripted(answer)
    with client(handler, max_retries=2) as c, pytest.raises(RemoteModelError) as caught:
        c.chat("m", MESSAGES)
    assert len(seen) == 3
    assert words in caught.value.message and "3 times" in caught.value.message
    assert caught.value.hint and caught.value.code == "remote_model_error"


def test_unreachable_error_says_how_to_start_a_server() -> None:
    handler, _ = scripted(httpx.ConnectError("refused"))
    with client(handler, max_retries=0) as c, pytest.raises(RemoteModelError) as caught:
        c.list_models()
    assert BASE in caught.value.message
    assert caught.value.hint is not None and "vllm serve" in caught.value.hint and "--base-url" in caught.value.hint


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (httpx.Response(404, json={"error": {"message": "no such model", "code": "model_not_found"}}), ModelNotFound),
        (httpx.Response(404, json={"error": {"message": "The model `m` does not exist.", "code": 404}}), ModelNotFound),
        (httpx.Response(404, text="Not Found"), ConfigError),
        (httpx.Response(400, json={"error": {"message": "context too long"}}), InputError),
        (httpx.Response(422, json={"detail": "bad field"}), InputError),
        (httpx.Response(401, json={"error": {"message": "bad key"}}), ConfigError),
    ],
    ids=["404-code", "404-vllm", "404-path", "400", "422", "401"],
)
def test_client_errors_are_not_retried_and_say_what_to_do(answer: httpx.Response, error: type[Exception]) -> None:
    handler, seen = scripted(answer)
    with client(handler, max_retries=3) as c, pytest.raises(error) as caught:
        c.chat("m", MESSAGES)
    assert len(seen) == 1
    assert type(caught.value) is error
    assert caught.value.hint  # type: ignore[attr-defined]


def test_malformed_success_is_a_remote_error() -> None:
    handler, seen = scripted(httpx.Response(200, text="<html>hello</html>"))
    with client(handler) as c, pytest.raises(RemoteModelError, match="not a chat completion"):
        c.chat("m", MESSAGES)
    assert len(seen) == 1


def test_retry_after_is_honoured_but_bounded() -> None:
    handler, seen = scripted(
        httpx.Response(429, headers={"Retry-After": "3600"}), httpx.Response(200, json=completion())
    )
    with client(handler, retry_after_max=0.05) as c:
        t0 = time.monotonic()
        c.chat("m", MESSAGES)
    assert len(seen) == 2 and time.monotonic() - t0 < 5


def test_missing_base_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="base URL"):
        ChatClient("")


def test_retry_policy_backs_off_exponentially_with_jitter() -> None:
    policy = RetryPolicy(max_retries=5, backoff_base=1.0, backoff_max=5.0, retry_after_max=10.0)
    rng = random.Random(0)
    for attempt, ceiling in [(0, 1.0), (1, 2.0), (2, 4.0), (3, 5.0), (6, 5.0)]:
        delay = policy.delay(attempt, None, rng)
        assert ceiling / 2 <= delay <= ceiling
    assert policy.delay(0, 3.0, rng) == 3.0
    assert policy.delay(0, 99.0, rng) == 10.0


def test_parse_retry_after_reads_seconds_and_dates() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 20 <= (parse_retry_after(future) or 0) <= 31


async def test_async_client_shares_the_behaviour() -> None:
    handler, seen = scripted(httpx.Response(503), httpx.Response(200, json=completion()))
    async with AsyncChatClient(BASE, transport=httpx.MockTransport(handler), backoff_base=0.001, max_retries=1) as c:
        result = await c.chat("m", MESSAGES, extra={"reasoning_effort": "high"})
    assert result.text == "a cat" and result.attempts == 2
    assert json.loads(seen[-1].content)["reasoning_effort"] == "high"


async def test_async_client_maps_errors_and_lists_models() -> None:
    handler, _ = scripted(
        httpx.Response(404, json={"error": {"code": "model_not_found", "message": "x"}}),
        httpx.Response(200, json={"data": [{"id": "m"}]}),
    )
    async with AsyncChatClient(BASE, transport=httpx.MockTransport(handler)) as c:
        with pytest.raises(ModelNotFound):
            await c.chat("m", MESSAGES)
        assert await c.list_models() == ["m"]
