"""The official ``ollama`` Python client against a real ``descry serve``: chat and generate with images,
streamed and not, list, show, ps and version, batching across 16 clients, and Ollama's errors."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.conftest import image_bytes
from tests.e2e.compat_server import KEY, MAX_BYTES, batch_counters
from tests.e2e.server import ServerProcess

ollama = pytest.importorskip("ollama")

pytestmark = pytest.mark.slow
PHOTO = image_bytes("JPEG", (48, 32))


@pytest.fixture
def server(sdk_server: ServerProcess) -> ServerProcess:
    return sdk_server


def client(server: ServerProcess, key: str = KEY) -> Any:
    return ollama.Client(host=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)


@pytest.fixture
def sdk(server: ServerProcess) -> Iterator[Any]:
    with client(server) as opened:
        yield opened


def test_chat_streamed_and_not(sdk: Any) -> None:
    messages = [{"role": "user", "content": "a photo of", "images": [PHOTO]}]
    whole = sdk.chat(model="descry", messages=messages, options={"num_predict": 8, "temperature": 0})
    assert whole.done and whole.message.role == "assistant" and isinstance(whole.message.content, str)
    assert whole.eval_count and whole.eval_count > 0 and whole.total_duration and whole.done_reason
    parts = list(sdk.chat(model="descry", messages=messages, options={"num_predict": 8}, stream=True))
    assert parts[-1].done and not any(part.done for part in parts[:-1])
    assert "".join(part.message.content or "" for part in parts) == whole.message.content


def test_generate_streamed_and_not(sdk: Any) -> None:
    whole = sdk.generate(model="descry", prompt="a photo of", images=[PHOTO], options={"num_predict": 8})
    assert whole.done and isinstance(whole.response, str) and whole.eval_count
    parts = list(
        sdk.generate(
            model="descry:latest", prompt="a photo of", images=[PHOTO], options={"num_predict": 8}, stream=True
        )
    )
    assert parts[-1].done and "".join(part.response or "" for part in parts) == whole.response


def test_list_show_ps_and_version(sdk: Any) -> None:
    names = [model.model for model in sdk.list().models]
    assert "descry:latest" in names and "descry-caption:latest" in names
    shown = sdk.show("descry")
    assert shown.capabilities and "vision" in shown.capabilities and shown.details.family == "blip"
    assert len(sdk.ps().models) == 1
    with pytest.raises(ollama.ResponseError) as unknown:
        sdk.show("llama3.2-vision")
    assert unknown.value.status_code == 404


def test_sixteen_clients_share_device_batches(server: ServerProcess) -> None:
    batches, images = batch_counters(server.url)

    def one(_: int) -> Any:
        with client(server) as sdk:
            return sdk.generate(model="descry", prompt="a photo of", images=[PHOTO], options={"num_predict": 8})

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(one, range(16)))
    assert all(answer.done for answer in answers)
    batches_after, images_after = batch_counters(server.url)
    assert images_after - images == 16
    assert (images_after - images) / (batches_after - batches) > 1  # the mean device batch


@pytest.mark.parametrize(("image", "status"), [(b"just some text", 415), (b"\xff\xd8\xff" + bytes(MAX_BYTES), 413)])
def test_bad_images_raise_response_error(sdk: Any, image: bytes, status: int) -> None:
    with pytest.raises(ollama.ResponseError) as refused:
        sdk.generate(model="descry", prompt="a photo of", images=[image])
    assert refused.value.status_code == status and refused.value.error


def test_raw_image_strings_and_unknown_models(server: ServerProcess) -> None:
    """Broken base64 and an SSRF URL (the client refuses both before sending: posted raw), an unknown model."""
    headers = {"Authorization": f"Bearer {KEY}"}
    for image, status in (("@@not base64@@", 400), ("http://169.254.169.254/latest/meta-data/", 403)):
        body = {"model": "descry", "prompt": "a photo of", "images": [image], "stream": False}
        response = httpx.post(f"{server.url}/api/generate", json=body, headers=headers, timeout=30)
        assert response.status_code == status and isinstance(response.json()["error"], str)
    with client(server) as sdk, pytest.raises(ollama.ResponseError) as unknown:
        sdk.chat(model="llava", messages=[{"role": "user", "content": "hi", "images": [PHOTO]}])
    assert unknown.value.status_code == 404
    with client(server, "wrong-key") as stranger, pytest.raises(ollama.ResponseError) as unauthorised:
        stranger.list()
    assert unauthorised.value.status_code == 401
