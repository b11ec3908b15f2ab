"""The openai_compat backend and the chat client against a real local HTTP server (tests.fakes)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image

from descry.backends.base import Generation, Prompted
from descry.backends.openai_compat import OpenAICompatBackend
from descry.backends.registry import backend_class, create_backend
from descry.config import ModelSettings
from descry.errors import ConfigError, ModelNotFound, RemoteModelError
from descry.openai_client import AsyncChatClient, ChatClient
from tests.fakes.openai_server import FakeOpenAIServer, Rule

MODEL = "fake-vlm"


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(models=[MODEL, "other-model"]) as fake:
        yield fake


def backend_for(server_url: str | None, model: str = MODEL, **settings: Any) -> OpenAICompatBackend:
    opts: dict[str, Any] = {"max_retries": 2, "request_timeout": 10.0}
    opts.update(settings)
    backend = create_backend(ModelSettings(name=model, base_url=server_url, backend="openai_compat", **opts))
    assert isinstance(backend, OpenAICompatBackend)
    return backend


@pytest.fixture
def backend(server: FakeOpenAIServer) -> Iterator[OpenAICompatBackend]:
    b = backend_for(server.base_url)
    b.load()
    yield b
    b.close()


def images(n: int) -> list[Image.Image]:
    """Images told apart by their size: 20x10, 21x11, ..."""
    return [Image.new("RGB", (20 + i, 10 + i), (40 * i % 256, 90, 160)) for i in range(n)]


def sizes(gens: list[Generation]) -> list[str]:
    return [g.text.split()[1] for g in gens]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_entry_point_and_settings_pick_the_backend(server: FakeOpenAIServer) -> None:
    assert backend_class("openai_compat") is OpenAICompatBackend
    b = create_backend(ModelSettings(name="some/model", base_url=server.base_url))
    assert isinstance(b, OpenAICompatBackend)
    caps = b.capabilities
    assert caps.instruct and caps.prompt and caps.batching and caps.structured_output


def test_batch_returns_generations_in_order_with_usage(server: FakeOpenAIServer, backend: OpenAICompatBackend) -> None:
    server.latency = 0.05
    gens = backend.generate([Prompted(image=img, prompt=f"item {i}") for i, img in enumerate(images(5))])
    assert sizes(gens) == ["20x10", "21x11", "22x12", "23x13", "24x14"]
    assert [g.text.splitlines()[-1] for g in gens] == [f"prompt: item {i}" for i in range(5)]
    for gen in gens:
        assert gen.finish_reason == "stop" and gen.output_tokens > 0 and gen.prompt_tokens > 0
        assert gen.timings["batch_size"] == 5 and gen.timings["request_s"] > 0


def test_images_travel_as_base64_data_urls(server: FakeOpenAIServer, backend: OpenAICompatBackend) -> None:
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 128))
    gray = Image.new("L", (9, 9), 128)
    gens = backend.generate([Prompted(image=images(1)[0]), Prompted(image=rgba), Prompted(image=gray)])
    kinds = {r.image_urls[0].split(",")[0] for r in server.chat_requests}
    assert kinds == {"data:image/jpeg;base64", "data:image/png;base64"}
    assert [g.text.split()[2] for g in gens] == ["JPEG", "PNG", "JPEG"]
    body = server.chat_requests[0].body or {}
    content = body["messages"][0]["content"]
    assert [part["type"] for part in content] == ["text", "image_url"]
    assert content[0]["text"] == backend.spec.default_prompt
    assert body["model"] == MODEL and body["max_tokens"] == backend.spec.params.max_new_tokens


def test_requests_of_a_batch_are_concurrent_and_bounded(server: FakeOpenAIServer) -> None:
    server.latency = 0.3
    wide = backend_for(server.base_url, max_concurrency=8)
    wide.load()
    try:
        wide.generate([Prompted(image=img) for img in images(5)])
    finally:
        wide.close()
    assert server.max_in_flight > 1
    server.reset()
    server.latency = 0.05
    narrow = backend_for(server.base_url, max_concurrency=1)
    narrow.load()
    try:
        gens = narrow.generate([Prompted(image=img) for img in images(3)])
    finally:
        narrow.close()
    assert server.max_in_flight == 1 and len(gens) == 3


def test_429_and_500_are_retried_then_succeed(server: FakeOpenAIServer, backend: OpenAICompatBackend) -> None:
    server.add(
        Rule(status=429, times=2, match="first", retry_after="0"),
        Rule(status=500, times=2, match="second", retry_after="0"),
    )
    gens = backend.generate(
        [Prompted(image=img, prompt=p) for img, p in zip(images(2), ["first", "second"], strict=True)]
    )
    assert sizes(gens) == ["20x10", "21x11"]
    assert [r.status for r in server.chat_requests].count(200) == 2
    assert len(server.chat_requests) == 6


def test_gives_up_after_max_retries(server: FakeOpenAIServer, backend: OpenAICompatBackend) -> None:
    server.add(Rule(status=503, times=None, retry_after="0"))
    with pytest.raises(RemoteModelError) as caught:
        backend.generate([Prompted(image=images(1)[0])])
    assert len(server.chat_requests) == 3  # max_retries=2
    assert "HTTP 503" in caught.value.message and caught.value.hint


def test_one_failed_item_does_not_lose_the_others(server: FakeOpenAIServer, backend: OpenAICompatBackend) -> None:
    server.add(Rule(status=500, times=None, match="BROKEN", retry_after="0"))
    prompts = ["fine", "BROKEN", "fine too"]
    gens = backend.generate([Prompted(image=img, prompt=p) for img, p in zip(images(3), prompts, strict=True)])
    assert len(gens) == 3
    assert sizes([gens[0], gens[2]]) == ["20x10", "22x12"]
    failed = gens[1]
    assert failed.finish_reason == "error" and failed.text == ""
    assert failed.structured is not None and failed.structured["error"]["code"] == "remote_model_error"
    assert "HTTP 500" in failed.structured["error"]["message"]


def test_a_batch_that_fails_entirely_raises(server: FakeOpenAIServer, backend: OpenAICompatBackend) -> None:
    server.add(Rule(status=500, times=None, retry_after="0"))
    with pytest.raises(RemoteModelError):
        backend.generate([Prompted(image=img) for img in images(2)])


def test_max_tokens_cut_reports_length(server: FakeOpenAIServer, backend: OpenAICompatBackend) -> None:
    gen = backend.generate(
        [Prompted(image=images(1)[0], params=backend.spec.params.model_copy(update={"max_new_tokens": 2}))]
    )[0]
    assert gen.finish_reason == "length" and gen.output_tokens == 2


def test_timeout_fails_quickly_with_a_remote_error(server: FakeOpenAIServer) -> None:
    server.add(Rule(delay=5.0, times=None))
    with ChatClient(server.base_url, timeout=0.3, max_retries=1, backoff_base=0.01) as client:
        t0 = time.monotonic()
        with pytest.raises(RemoteModelError) as caught:
            client.chat(MODEL, [{"role": "user", "content": "hi"}])
    assert time.monotonic() - t0 < 4.5
    assert "did not answer" in caught.value.message and "REQUEST_TIMEOUT" in (caught.value.hint or "")


def test_retry_after_is_waited_for(server: FakeOpenAIServer) -> None:
    server.add(Rule(status=429, retry_after="1"))
    with ChatClient(server.base_url, max_retries=1) as client:
        t0 = time.monotonic()
        result = client.chat(MODEL, [{"role": "user", "content": "hi"}])
    assert result.attempts == 2 and time.monotonic() - t0 >= 0.8


def test_unreachable_server_is_a_clear_error() -> None:
    backend = backend_for(f"http://127.0.0.1:{free_port()}/v1", max_retries=0)
    with pytest.raises(RemoteModelError) as caught:
        backend.load()
    assert "127.0.0.1" in caught.value.message
    assert caught.value.hint and "vllm serve" in caught.value.hint


def test_unknown_model_lists_what_is_served(server: FakeOpenAIServer) -> None:
    backend = backend_for(server.base_url, model="missing/model")
    with pytest.raises(ModelNotFound) as caught:
        backend.load()
    assert "missing/model" in caught.value.message
    assert MODEL in caught.value.message and "other-model" in caught.value.message
    assert caught.value.hint and "--model" in caught.value.hint


def test_model_unloaded_after_load_is_model_not_found(server: FakeOpenAIServer) -> None:
    with ChatClient(server.base_url) as client, pytest.raises(ModelNotFound):
        client.chat("gone", [{"role": "user", "content": "hi"}])
    assert len(server.chat_requests) == 1


def test_missing_base_url_is_a_config_error() -> None:
    backend = backend_for(None)
    with pytest.raises(ConfigError) as caught:
        backend.load()
    assert caught.value.hint and "--base-url" in caught.value.hint and "DESCRY_MODEL__BASE_URL" in caught.value.hint


def test_api_key_is_required_when_the_server_wants_one() -> None:
    with FakeOpenAIServer(models=[MODEL], api_key="sekret") as fake:
        keyed = backend_for(fake.base_url, api_key="sekret")
        keyed.load()
        assert keyed.generate([Prompted(image=images(1)[0])])[0].finish_reason == "stop"
        keyed.close()
        with pytest.raises(ConfigError, match="API key"):
            backend_for(fake.base_url).load()


def test_response_format_yields_structured_output(server: FakeOpenAIServer, backend: OpenAICompatBackend) -> None:
    schema = {"type": "json_schema", "json_schema": {"name": "c", "schema": {"type": "object"}}}
    gen = backend.generate([Prompted(image=images(1)[0], options={"response_format": schema})])[0]
    assert gen.structured is not None and gen.structured["text"].startswith("image 20x10")
    assert (server.chat_requests[0].body or {})["response_format"] == schema


async def test_async_client_passes_extra_fields(server: FakeOpenAIServer) -> None:
    server.add(Rule(status=500, retry_after="0"))
    async with AsyncChatClient(server.base_url, max_retries=1) as client:
        result = await client.chat(
            "other-model", [{"role": "user", "content": "polish"}], extra={"reasoning_effort": "low"}
        )
        assert await client.list_models() == [MODEL, "other-model"]
    assert result.text == "prompt: polish" and result.reasoning and result.attempts == 2
    assert all((r.body or {}).get("reasoning_effort") == "low" for r in server.chat_requests)


def test_ollama_style_latest_tag_counts_as_served() -> None:
    with FakeOpenAIServer(models=["llava:latest"]) as fake:
        backend = backend_for(fake.base_url, model="llava")
        backend.load()
        backend.close()
        assert backend.served == ["llava:latest"]
