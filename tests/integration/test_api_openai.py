"""The OpenAI-compatible route in-process: answers, streaming, caption mode, batching and OpenAI's error shape."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import httpx
import pytest

from descry.api.security import hash_key
from descry.backends.base import Capabilities
from descry.config import ApiKey, Settings
from tests.api_helpers import api_settings, jpeg, serve
from tests.fakes.echo_backend import EchoBackend

URL = "/v1/chat/completions"


def data_url(data: bytes, kind: str = "image/jpeg") -> str:
    return f"data:{kind};base64,{base64.b64encode(data).decode()}"


def chat(image: str | None, text: str = "what is this?", **extra: Any) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    if image is not None:
        parts.append({"type": "image_url", "image_url": {"url": image}})
    return {"model": "echo", "messages": [{"role": "user", "content": parts}], **extra}


def openai_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code and error["message"] and "param" in error, error
    assert error["type"] == (
        "invalid_request_error" if status < 500 and status not in (401, 403, 429) else error["type"]
    )
    return error


def events(text: str) -> list[Any]:
    lines = [line.removeprefix("data: ") for line in text.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


async def test_chat_with_a_data_url_answers_through_the_model(settings: Settings) -> None:
    config = api_settings(settings, tags={"enabled": False})
    async with serve(config) as (client, _app):
        body = chat(data_url(jpeg((40, 30))), max_tokens=20, temperature=0.0, seed=7)
        body["messages"].insert(0, {"role": "system", "content": "be brief"})
        response = await client.post(URL, json=body)
        assert response.status_code == 200, response.text
        done = response.json()
        assert done["object"] == "chat.completion" and done["model"] == "echo" and done["id"].startswith("chatcmpl-")
        choice = done["choices"][0]
        assert choice["message"]["role"] == "assistant" and choice["finish_reason"] == "stop"
        # the echo backend answers "<width>x<height> <prompt>": the system text comes first
        assert choice["message"]["content"].startswith("40x30 be brief")
        usage = done["usage"]
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
        stopped = await client.post(URL, json=chat(data_url(jpeg((40, 30))), stop=["x"]))
        assert stopped.json()["choices"][0]["message"]["content"] == "40"


async def test_streaming_sends_the_answer_then_done(settings: Settings) -> None:
    async with serve(api_settings(settings)) as (client, _app):
        image = data_url(jpeg((40, 30)))
        plain = (await client.post(URL, json=chat(image))).json()
        response = await client.post(URL, json=chat(image, stream=True, stream_options={"include_usage": True}))
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        chunks = events(response.text)
        assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
        assert text == plain["choices"][0]["message"]["content"]
        assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0


async def test_caption_mode_answers_with_the_checked_caption_and_tags(settings: Settings) -> None:
    async with serve(api_settings(settings)) as (client, _app):
        image = data_url(jpeg((40, 30)))
        named = await client.post(URL, json={**chat(image), "model": "descry-caption"})
        no_text = await client.post(URL, json=chat(image, text=""))
        as_json = await client.post(
            URL, json={**chat(image, response_format={"type": "json_object"}), "model": "descry-caption"}
        )
        for response in (named, no_text, as_json):
            assert response.status_code == 200, response.text
            assert isinstance(response.json()["tags"], list)
        caption = json.loads(as_json.json()["choices"][0]["message"]["content"])
        assert set(caption) == {"caption", "labels", "tags"} and caption["caption"]["text"]
        assert [label["name"] for label in caption["labels"]] == caption["tags"] == as_json.json()["tags"]
        generated = await client.post(URL, json=chat(image))
        assert generated.json()["tags"] is None


async def test_caption_mode_can_be_switched_off(settings: Settings) -> None:
    config = api_settings(settings, compat={"caption_without_prompt": False})
    async with serve(config) as (client, _app):
        response = await client.post(URL, json=chat(data_url(jpeg((40, 30))), text=""))
        assert response.status_code == 200 and response.json()["tags"] is None


async def test_bad_inputs_answer_in_openai_shape(settings: Settings) -> None:
    config = api_settings(settings, limits={"max_bytes": 20_000})
    async with serve(config) as (client, _app):
        image = data_url(jpeg((40, 30)))
        openai_error(await client.post(URL, json=chat("data:image/png;base64,@@not-base64@@")), 400, "invalid_input")
        openai_error(
            await client.post(URL, json=chat(data_url(b"plain text, not an image", "image/png"))),
            415,
            "unsupported_format",
        )
        ssrf = await client.post(URL, json=chat("http://169.254.169.254/latest/meta-data"))
        assert ssrf.status_code == 403 and ssrf.json()["error"]["type"] == "permission_error"
        big = data_url(jpeg((40, 30)) + b"\0" * 30_000)
        openai_error(await client.post(URL, json=chat(big)), 413, "image_too_large")
        missing = openai_error(await client.post(URL, json={**chat(image), "model": "gpt-9"}), 404, "model_not_found")
        assert "echo" in missing["message"]
        openai_error(await client.post(URL, json=chat(image, n=2)), 400, "invalid_input")
        openai_error(
            await client.post(URL, json=chat(image, response_format={"type": "json_object"})), 400, "invalid_input"
        )
        openai_error(await client.post(URL, json=chat(None)), 400, "invalid_input")
        invalid = openai_error(await client.post(URL, json={"model": "echo", "messages": []}), 400, "validation_error")
        assert invalid["param"] == "messages"
        openai_error(await client.post(URL, content=b"{not json"), 400, "validation_error")
        assert (await client.get(URL)).json()["error"]["type"] == "invalid_request_error"


async def test_keys_and_rate_limits_answer_in_openai_shape(settings: Settings) -> None:
    keys = [ApiKey(name="app", sha256=hash_key("sk-test"))]
    config = api_settings(settings, security={"api_keys": keys, "key_rate": 0.001, "key_burst": 1, "client_rate": 0})
    async with serve(config, ready=False) as (client, _app):
        body = chat(data_url(jpeg((40, 30))))
        unauthorised = await client.post(URL, json=body)
        assert unauthorised.status_code == 401 and unauthorised.json()["error"]["type"] == "authentication_error"
        wrong = await client.post(URL, json=body, headers={"Authorization": "Bearer sk-wrong"})
        assert wrong.status_code == 401
        headers = {"Authorization": "Bearer sk-test"}
        first = await client.post(URL, json=body, headers=headers)
        assert first.status_code in (200, 503), first.text
        limited = await client.post(URL, json=body, headers=headers)
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
        assert limited.json()["error"]["type"] == "rate_limit_error"


@pytest.mark.parametrize("clients", [16])
async def test_concurrent_clients_share_device_batches(settings: Settings, clients: int) -> None:
    config = api_settings(settings, model={"batch_size": 8}, batching={"max_wait_ms": 50})
    backend = EchoBackend(delay=0.02)
    async with serve(config, backend) as (client, _app):
        bodies = [chat(data_url(jpeg((40, 30))), max_tokens=8) for _ in range(clients)]
        responses = await asyncio.gather(*(client.post(URL, json=body) for body in bodies))
        assert [r.status_code for r in responses] == [200] * clients
        assert sum(backend.batches) == clients and max(backend.batches) > 1
        metrics = (await client.get("/metrics")).text
        assert "descry_batch_size_count" in metrics


async def test_models_lists_the_served_names(settings: Settings) -> None:
    async with serve(api_settings(settings, compat={"aliases": ["gpt-4o-mini"]})) as (client, _app):
        listed = (await client.get("/v1/models")).json()
        assert listed["object"] == "list"
        ids = [entry["id"] for entry in listed["data"]]
        assert {"echo", "gpt-4o-mini", "descry-caption"} <= set(ids)
        answered = await client.post(URL, json={**chat(data_url(jpeg((40, 30)))), "model": "gpt-4o-mini"})
        assert answered.status_code == 200


async def test_responses_api_as_photoprism_sends_it(settings: Settings) -> None:
    """POST /v1/responses: input_text and input_image parts, instructions, a labels schema (caption mode)."""
    labels_schema = {"type": "object", "properties": {"labels": {"type": "array"}}, "required": ["labels"]}
    async with serve(api_settings(settings)) as (client, _app):
        image = data_url(jpeg((40, 30)))
        parts = [
            {"type": "input_text", "text": "caption"},
            {"type": "input_image", "image_url": image, "detail": "low"},
        ]
        body: dict[str, Any] = {
            "model": "echo",
            "instructions": "be brief",
            "input": [{"role": "user", "content": parts}],
            "max_output_tokens": 512,
        }
        plain = await client.post("/v1/responses", json=body)
        assert plain.status_code == 200, plain.text
        done = plain.json()
        assert done["object"] == "response" and done["id"].startswith("resp_") and done["status"] == "completed"
        text = done["output"][0]["content"][0]
        assert text["type"] == "output_text" and text["text"].startswith("40x30 be brief")
        assert done["usage"]["total_tokens"] == done["usage"]["input_tokens"] + done["usage"]["output_tokens"]
        fmt = {"format": {"type": "json_schema", "name": "photoprism_vision_labels_v1", "schema": labels_schema}}
        labelled = await client.post("/v1/responses", json={**body, "model": "descry-caption", "text": fmt})
        answer = json.loads(labelled.json()["output"][0]["content"][0]["text"])
        assert isinstance(answer["labels"], list) and answer["caption"]["text"]
        refused = await client.post("/v1/responses", json={**body, "text": fmt})  # echo cannot constrain JSON
        openai_error(refused, 400, "invalid_input")
        openai_error(await client.post("/v1/responses", json={**body, "stream": True}), 400, "invalid_input")
        openai_error(await client.post("/v1/responses", json={**body, "model": "gpt-5-nano"}), 404, "model_not_found")


async def test_a_full_queue_answers_429_in_openai_shape(settings: Settings) -> None:
    config = api_settings(settings, model={"batch_size": 1}, batching={"max_queue": 1, "max_wait_ms": 0})
    async with serve(config, EchoBackend(delay=0.2)) as (client, _app):
        body = chat(data_url(jpeg((40, 30))))
        responses = await asyncio.gather(*(client.post(URL, json=body) for _ in range(8)))
        refused = [r for r in responses if r.status_code == 429]
        assert refused and len(refused) < 8, [r.status_code for r in responses]
        assert all(r.json()["error"]["type"] == "rate_limit_error" and r.headers["Retry-After"] for r in refused)
        assert {r.status_code for r in responses} <= {200, 429}


class TaskBackend(EchoBackend):
    """Like Florence-2: task tokens, no free-text prompt; answers with the task it ran."""

    capabilities = Capabilities(prompt=False, tasks=frozenset({"<CAPTION>", "<OCR>"}), default_task="<CAPTION>")

    def forward(self, batch: Any) -> Any:
        self.batches.append(len(batch))
        return [f"ran {item.task or 'default'} prompt={item.prompt}" for item in batch]


async def test_a_task_model_runs_the_named_task_and_drops_other_text(settings: Settings) -> None:
    async with serve(api_settings(settings), TaskBackend()) as (client, _app):
        image = data_url(jpeg((40, 30)))
        named = await client.post(URL, json=chat(image, text="<OCR>"))
        assert named.json()["choices"][0]["message"]["content"] == "ran <OCR> prompt=None"
        other = await client.post(URL, json=chat(image, text="what is this?"))
        assert other.json()["choices"][0]["message"]["content"] == "ran default prompt=None"
        repeated = chat(image, text="<OCR>")
        repeated["messages"] += [{"role": "assistant", "content": "x"}, repeated["messages"][0]]
        assert (await client.post(URL, json=repeated)).status_code == 200  # the same image twice is one image
