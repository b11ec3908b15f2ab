"""The Ollama-compatible routes in-process: chat and generate (streamed by default), the model routes,
batching and Ollama's error shape."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import httpx

from descry.config import Settings
from tests.api_helpers import api_settings, jpeg, serve
from tests.fakes.echo_backend import EchoBackend

FINAL_FIELDS = {"total_duration", "load_duration", "prompt_eval_count", "eval_count", "eval_duration", "done_reason"}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def lines(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def ollama_error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body["error"], str) and body["error"], body
    return str(body["error"])


async def test_chat_streams_by_default_and_answers_whole_when_asked(settings: Settings) -> None:
    async with serve(api_settings(settings, tags={"enabled": False})) as (client, _app):
        message = {"role": "user", "content": "what is this?", "images": [b64(jpeg((40, 30)))]}
        body = {"model": "descry", "messages": [{"role": "system", "content": "be brief"}, message]}
        chunks = lines(await client.post("/api/chat", json=body))
        assert [c["done"] for c in chunks] == [False, True]
        assert chunks[0]["message"]["role"] == "assistant" and chunks[0]["message"]["content"].startswith("40x30")
        assert set(chunks[-1]) >= FINAL_FIELDS and chunks[-1]["eval_count"] > 0
        whole = await client.post("/api/chat", json={**body, "stream": False})
        assert whole.status_code == 200 and whole.headers["content-type"].startswith("application/json")
        answer = whole.json()
        assert answer["done"] is True and set(answer) >= FINAL_FIELDS
        assert answer["message"]["content"] == chunks[0]["message"]["content"]


async def test_generate_applies_options_and_system(settings: Settings) -> None:
    async with serve(api_settings(settings)) as (client, _app):
        body = {
            "model": "descry:latest",
            "prompt": "hi",
            "system": "sys",
            "images": [b64(jpeg((40, 30)))],
            "stream": False,
            "options": {"num_predict": 16, "temperature": 0, "top_p": 0.9, "seed": 1, "stop": ["x"], "num_ctx": 4096},
        }
        answer = (await client.post("/api/generate", json=body)).json()
        assert answer["response"] == "40" and answer["done_reason"] == "stop" and answer["context"] == []
        streamed = lines(await client.post("/api/generate", json={**body, "stream": True}))
        assert streamed[0]["response"] == "40" and streamed[-1]["done"] is True and streamed[-1]["response"] == ""
        loaded = (await client.post("/api/generate", json={"model": "descry"})).json()
        assert loaded["done"] is True and loaded["done_reason"] == "load"


async def test_caption_model_answers_with_tags_and_json(settings: Settings) -> None:
    async with serve(api_settings(settings)) as (client, _app):
        body = {"model": "descry-caption", "prompt": "", "images": [b64(jpeg((40, 30)))], "stream": False}
        answer = (await client.post("/api/generate", json=body)).json()
        assert isinstance(answer["tags"], list) and answer["response"]
        as_json = (await client.post("/api/generate", json={**body, "format": "json"})).json()
        assert set(json.loads(as_json["response"])) == {"caption", "labels", "tags"}
        labels_schema = {"type": "object", "properties": {"labels": {"type": "array"}}, "required": ["labels"]}
        labelled = (await client.post("/api/generate", json={**body, "format": labels_schema})).json()
        labels = json.loads(labelled["response"])["labels"]
        assert all(set(label) == {"name", "confidence", "topicality"} for label in labels)
        assert [label["name"] for label in labels] == labelled["tags"]


async def test_model_routes(settings: Settings) -> None:
    async with serve(api_settings(settings)) as (client, _app):
        names = [m["name"] for m in (await client.get("/api/tags")).json()["models"]]
        assert {"descry:latest", "descry-caption:latest", "echo:latest"} <= set(names)
        running = (await client.get("/api/ps")).json()["models"]
        assert len(running) == 1 and running[0]["expires_at"]
        shown = (await client.post("/api/show", json={"model": "descry"})).json()
        assert "vision" in shown["capabilities"] and shown["details"]["family"] == "echo"
        assert (await client.post("/api/show", json={"name": "descry:latest"})).status_code == 200
        ollama_error(await client.post("/api/show", json={"model": "llama3"}), 404)
        assert (await client.get("/api/version")).json()["version"]


async def test_bad_inputs_answer_in_ollama_shape(settings: Settings) -> None:
    config = api_settings(settings, limits={"max_bytes": 20_000})
    async with serve(config) as (client, _app):

        def gen(image: str, **extra: Any) -> dict[str, Any]:
            return {"model": "descry", "prompt": "what?", "images": [image], "stream": False, **extra}

        ollama_error(await client.post("/api/generate", json=gen("@@not base64@@")), 400)
        ollama_error(await client.post("/api/generate", json=gen(b64(b"plain text, not an image"))), 415)
        ollama_error(await client.post("/api/generate", json=gen("http://169.254.169.254/latest/meta-data")), 403)
        ollama_error(await client.post("/api/generate", json=gen(b64(jpeg((40, 30)) + b"\0" * 30_000))), 413)
        assert "not served" in ollama_error(await client.post("/api/generate", json=gen(b64(jpeg()), model="x")), 404)
        ollama_error(await client.post("/api/generate", json=gen(b64(jpeg()), format="json")), 400)
        ollama_error(
            await client.post("/api/chat", json={"model": "descry", "messages": [{"role": "user", "content": "hi"}]}),
            400,
        )
        ollama_error(await client.post("/api/chat", json={"model": 3}), 400)
        ollama_error(await client.post("/api/chat", content=b"{oops"), 400)
        ollama_error(await client.get("/api/generate"), 405)


async def test_concurrent_clients_share_device_batches(settings: Settings) -> None:
    config = api_settings(settings, model={"batch_size": 8}, batching={"max_wait_ms": 50})
    backend = EchoBackend(delay=0.02)
    async with serve(config, backend) as (client, _app):
        body = {"model": "descry", "prompt": "what?", "images": [b64(jpeg((40, 30)))], "stream": False}
        responses = await asyncio.gather(*(client.post("/api/generate", json=body) for _ in range(16)))
        assert [r.status_code for r in responses] == [200] * 16
        assert sum(backend.batches) == 16 and max(backend.batches) > 1


async def test_taggui_remote_mode_gets_koboldcpp_results(settings: Settings) -> None:
    """taggui's remote mode posts KoboldCpp's /api/v1/generate with a chat-templated prompt."""
    prompt = (
        "<|im_start|>system\nBe exact.<|im_end|>\n<|im_start|>user\n"
        "<|vision_start|><|image_pad|><|vision_end|>Describe the image in one sentence.<|im_end|>\n"
        "<|im_start|>assistant"
    )
    body = {
        "prompt": prompt,
        "images": [b64(jpeg((40, 30)))],
        "max_new_tokens": 100,
        "max_length": 100,
        "do_sample": False,
        "temperature": 1.0,
        "top_k": 50,
        "repetition_penalty": 1.0,
        "rep_pen": 1.0,
    }
    async with serve(api_settings(settings)) as (client, _app):
        answered = await client.post("/api/v1/generate", json=body)
        assert answered.status_code == 200, answered.text
        text = answered.json()["results"][0]["text"]
        assert text == "40x30 Be exact.\nDescribe the image in one sentence."  # the echo backend repeats the prompt
        captioned = await client.post("/api/v1/generate", json={**body, "prompt": "<|im_start|>assistant"})
        assert isinstance(captioned.json()["tags"], list)  # no instruction: descry's checked caption
        refused = await client.post("/api/v1/generate", json={**body, "images": ["@@"]})
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_input"
