"""The official ``openai`` SDK against a real ``descry serve``: chat about an image (data URL and http URL),
streaming and not, batching across 16 clients, and the SDK's own exceptions for bad requests."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import image_bytes
from tests.e2e.compat_server import KEY, MAX_BYTES, batch_counters, compat_server
from tests.e2e.server import ServerProcess

openai = pytest.importorskip("openai")

pytestmark = pytest.mark.slow


@pytest.fixture
def server(sdk_server: ServerProcess) -> ServerProcess:
    return sdk_server


def client(server: ServerProcess, key: str = KEY) -> Any:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0, timeout=60)


def data_url(data: bytes, kind: str = "image/jpeg") -> str:
    return f"data:{kind};base64,{base64.b64encode(data).decode()}"


def ask(url: str, text: str = "a photo of") -> list[dict[str, Any]]:
    parts = [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": url}}]
    return [{"role": "user", "content": parts}]


def test_chat_with_a_data_url_and_an_http_url(server: ServerProcess, image_site: str) -> None:
    with client(server) as sdk:
        for url in (data_url(image_bytes("JPEG", (48, 32))), f"{image_site}/photo.jpg"):
            done = sdk.chat.completions.create(model="descry", messages=ask(url), max_tokens=8, temperature=0)
            assert done.object == "chat.completion" and len(done.choices) == 1
            assert isinstance(done.choices[0].message.content, str) and done.choices[0].finish_reason in {
                "stop",
                "length",
            }
            assert done.usage is not None and done.usage.completion_tokens > 0
        models = [model.id for model in sdk.models.list()]
        assert "descry" in models and "descry-caption" in models


def test_streaming_matches_the_plain_answer(server: ServerProcess) -> None:
    messages = ask(data_url(image_bytes("JPEG", (48, 32))))
    with client(server) as sdk:
        plain = sdk.chat.completions.create(model="descry", messages=messages, max_tokens=8)
        stream = sdk.chat.completions.create(model="descry", messages=messages, max_tokens=8, stream=True)
        chunks = list(stream)
        text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
        assert text == plain.choices[0].message.content
        assert chunks[-1].choices[0].finish_reason == plain.choices[0].finish_reason


def test_sixteen_clients_share_device_batches(server: ServerProcess) -> None:
    messages = ask(data_url(image_bytes("JPEG", (48, 32))))

    async def run() -> list[Any]:
        clients = [openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0) for _ in range(16)]
        try:
            calls = (c.chat.completions.create(model="descry", messages=messages, max_tokens=8) for c in clients)
            return list(await asyncio.gather(*calls))
        finally:
            await asyncio.gather(*(c.close() for c in clients))

    batches, images = batch_counters(server.url)
    answers = asyncio.run(run())
    assert len(answers) == 16 and all(a.choices[0].message.content is not None for a in answers)
    batches_after, images_after = batch_counters(server.url)
    assert images_after - images == 16
    assert (images_after - images) / (batches_after - batches) > 1  # the mean device batch


def test_bad_requests_raise_the_sdks_exceptions(server: ServerProcess) -> None:
    with client(server) as sdk:

        def create(url: str, model: str = "descry") -> Any:
            return sdk.chat.completions.create(model=model, messages=ask(url), max_tokens=4)

        with pytest.raises(openai.BadRequestError):
            create("data:image/jpeg;base64,!!broken!!")
        with pytest.raises(openai.APIStatusError) as not_image:
            create(data_url(b"just some text", "image/png"))
        assert not_image.value.status_code == 415
        with pytest.raises(openai.PermissionDeniedError):
            create("http://169.254.169.254/latest/meta-data/")
        with pytest.raises(openai.APIStatusError) as too_large:
            create(data_url(b"\xff\xd8\xff" + bytes(MAX_BYTES)))
        assert too_large.value.status_code == 413
        with pytest.raises(openai.NotFoundError) as unknown:
            create(data_url(image_bytes("JPEG", (48, 32))), model="gpt-5")
        assert unknown.value.code == "model_not_found"
        with pytest.raises(openai.BadRequestError):
            sdk.chat.completions.create(model="descry", messages=ask(data_url(image_bytes("JPEG", (8, 8)))), n=2)
    with client(server, "sk-wrong") as stranger, pytest.raises(openai.AuthenticationError) as refused:
        stranger.chat.completions.create(model="descry", messages=ask(data_url(image_bytes("JPEG", (8, 8)))))
    assert refused.value.status_code == 401 and refused.value.body["type"] == "authentication_error"
    keyless = httpx.post(f"{server.url}/v1/chat/completions", json={"model": "descry", "messages": []}, timeout=10)
    assert keyless.status_code == 401 and keyless.json()["error"]["type"] == "authentication_error"


def test_a_rate_limited_call_raises_rate_limit_error(tmp_path: Path) -> None:
    """A key over its rate gets 429 with Retry-After (a server whose model is missing answers fast)."""
    process = compat_server(
        tmp_path / "no-such-model", tmp_path / "run", DESCRY_SECURITY__KEY_RATE="0.01", DESCRY_SECURITY__KEY_BURST="1"
    )
    process.start(timeout=90, until="/health")
    try:
        with openai.OpenAI(base_url=f"{process.url}/v1", api_key=KEY, max_retries=0) as sdk:
            messages = ask(data_url(image_bytes("JPEG", (8, 8))))
            with pytest.raises(openai.APIStatusError):  # the one allowed call: the model is not loaded (503)
                sdk.chat.completions.create(model="descry", messages=messages)
            with pytest.raises(openai.RateLimitError) as limited:
                sdk.chat.completions.create(model="descry", messages=messages)
        assert int(limited.value.response.headers["retry-after"]) >= 1
        assert limited.value.body["type"] == "rate_limit_error"
    finally:
        process.stop()
