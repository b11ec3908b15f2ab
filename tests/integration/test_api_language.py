"""The API's `language` field: an instruction-following model answers in it and the response says which;
an English-only model without an enhancement LLM gets 422 unsupported_request before any model work;
a malformed tag is a 4xx validation error."""

from __future__ import annotations

from typing import Any

from descry.backends.base import Capabilities
from descry.config import Settings
from tests.api_helpers import api_settings, jpeg, serve
from tests.fakes.echo_backend import EchoBackend


class EnglishOnly(EchoBackend):
    capabilities = Capabilities(instruct=False, prompt=True)


async def test_language_reaches_the_prompt_and_the_response(settings: Settings) -> None:
    async with serve(api_settings(settings)) as (client, _app):
        german = await client.post(
            "/v1/caption", files={"file": ("a.jpg", jpeg(), "image/jpeg")}, data={"language": "de"}
        )
        default = await client.post("/v1/caption", files={"file": ("a.jpg", jpeg(), "image/jpeg")})
        bad = await client.post(
            "/v1/caption", files={"file": ("a.jpg", jpeg(), "image/jpeg")}, data={"language": "x y"}
        )
    assert german.status_code == 200, german.text
    body: dict[str, Any] = german.json()
    assert body["language"] == "de" and default.json()["language"] == "en"
    assert 400 <= bad.status_code < 500 and bad.json()["error"]["code"]


async def test_english_only_models_without_an_llm_refuse_other_languages_with_422(settings: Settings) -> None:
    backend = EnglishOnly()
    async with serve(api_settings(settings), backend) as (client, _app):
        refused = await client.post(
            "/v1/caption", files={"file": ("a.jpg", jpeg(), "image/jpeg")}, data={"language": "fr"}
        )
        batches_before_english = list(backend.batches)
        english = await client.post("/v1/caption", files={"file": ("a.jpg", jpeg(), "image/jpeg")})
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error["code"] == "unsupported_request" and error["hint"]
    assert english.status_code == 200 and english.json()["language"] == "en"
    assert batches_before_english == [] and backend.batches  # only the English request reached the model


async def test_a_job_in_a_language_the_model_cannot_write_is_refused_before_it_is_stored(settings: Settings) -> None:
    async with serve(api_settings(settings), EnglishOnly()) as (client, _app):
        refused = await client.post(
            "/v1/jobs", files={"files": ("a.jpg", jpeg(), "image/jpeg")}, data={"language": "de"}
        )
        listed = await client.get("/v1/jobs")
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "unsupported_request"
    assert listed.status_code == 200 and listed.json() == []
