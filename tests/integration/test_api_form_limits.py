"""Multipart limits are descry's own, answered with the documented codes on every upload route.

The framework's defaults (1 000 files, 1 000 fields, 1 MB a field) and its 400 ``bad_request`` must
never answer first: too many files or fields is 413 ``payload_too_large``, a text field over
``DESCRY_SECURITY__MAX_FIELD_CHARS`` is 422 ``validation_error``, a malformed body 400 ``invalid_input``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from descry import errors
from descry.api.errors import HTTP_CODES
from descry.config import Settings
from tests.api_helpers import api_settings, jpeg, serve
from tests.security.corpus import picture, png_flipped_idat, valid_pngs

# route -> the name of its file part(s); every route that reads a multipart form
SINGLE = {"/v1/caption": "file", "/caption": "file", "/infer": "file", "/api/enrich": "file"}
MANY = {"/v1/caption/batch": "files", "/v1/jobs": "files", "/batch-caption": "files", "/async-batch-caption": "files"}
ROUTES = {**SINGLE, **MANY}
# a text field each route reads: FastAPI's Form parameter on /api/enrich, the routes' own fields elsewhere
FIELD = {"/caption": "detailed", "/infer": "prompt", "/api/enrich": "asset_id"}
BIG_FIELD = "x" * (5 * 1024 * 1024)
DOCS = Path(__file__).parents[2] / "docs" / "api.md"


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text[:500]
    body: dict[str, Any] = response.json()
    assert body["error"]["code"] == code, body
    assert body["request_id"] == response.headers["x-request-id"]


def _files(route: str, count: int) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [(ROUTES[route], (f"{i}.jpg", b"\xff\xd8\xff", "image/jpeg")) for i in range(count)]


@pytest.mark.parametrize("route", ROUTES)
async def test_too_many_files_is_413_payload_too_large(route: str, settings: Settings) -> None:
    config = api_settings(settings, security={"max_files": 3, "client_rate": 0.0})
    async with serve(config) as (client, _app):
        response = await client.post(route, files=_files(route, 4))
    assert_error(response, 413, "payload_too_large")


async def test_ten_thousand_files_is_413_not_the_frameworks_400(settings: Settings) -> None:
    async with serve(api_settings(settings)) as (client, _app):
        response = await client.post("/v1/caption/batch", files=_files("/v1/caption/batch", 10_000))
        seed = await client.post("/batch-caption", files=_files("/batch-caption", 10_000))
    assert_error(response, 413, "payload_too_large")
    assert_error(seed, 413, "payload_too_large")


@pytest.mark.parametrize("route", ROUTES)
async def test_a_5_mb_form_field_is_422_validation_error(route: str, settings: Settings) -> None:
    field = FIELD.get(route, "prompt")
    async with serve(api_settings(settings)) as (client, _app):
        response = await client.post(route, files=_files(route, 1), data={field: BIG_FIELD})
    assert_error(response, 422, "validation_error")


@pytest.mark.parametrize("route", ["/v1/caption", "/v1/caption/batch", "/caption", "/batch-caption"])
async def test_too_many_form_fields_is_413_payload_too_large(route: str, settings: Settings) -> None:
    fields = {"sinks": ["log"] * 200}
    async with serve(api_settings(settings)) as (client, _app):
        response = await client.post(route, files=_files(route, 1), data=fields)
    assert_error(response, 413, "payload_too_large")


@pytest.mark.parametrize("route", ["/v1/caption", "/caption", "/infer", "/batch-caption"])
async def test_malformed_multipart_is_400_invalid_input(route: str, settings: Settings) -> None:
    headers = {"content-type": "multipart/form-data"}  # no boundary
    async with serve(api_settings(settings)) as (client, _app):
        response = await client.post(route, content=b"--x\r\n\r\n", headers=headers)
    assert_error(response, 400, "invalid_input")


async def test_forms_within_the_limits_still_work(settings: Settings) -> None:
    config = api_settings(settings, security={"max_files": 3, "client_rate": 0.0})
    files = [("files", (f"{i}.jpg", jpeg(), "image/jpeg")) for i in range(3)]
    prompt = "y" * 1900
    async with serve(config) as (client, _app):
        batch = await client.post("/v1/caption/batch", files=files, data={"prompt": prompt})
        seed = await client.post("/batch-caption", files=files)
        one = {"file": ("a.jpg", jpeg(), "image/jpeg")}
        enrich = await client.post("/api/enrich", files=one, data={"asset_id": "A"})
    assert batch.status_code == 200 and batch.json()["succeeded"] == 3, batch.text
    assert seed.status_code == 200 and len(seed.json()["results"]) == 3, seed.text
    assert enrich.status_code == 200, enrich.text


async def test_damaged_png_is_refused_and_whole_pngs_are_captioned(settings: Settings) -> None:
    async with serve(api_settings(settings)) as (client, _app):
        damaged = png_flipped_idat(picture("PNG", (128, 128)))
        refused = await client.post("/v1/caption", files={"file": ("flipped.png", damaged, "image/png")})
        seed = await client.post("/infer", files={"file": ("flipped.png", damaged, "image/png")})
        whole = [
            await client.post("/v1/caption", files={"file": (f"{label}.png", data, "image/png")})
            for label, data in valid_pngs()
        ]
    assert_error(refused, 400, "corrupt_image")
    assert_error(seed, 400, "corrupt_image")
    assert [r.status_code for r in whole] == [200] * len(whole), [r.text for r in whole if r.status_code != 200]


def _documented_codes() -> set[str]:
    text = DOCS.read_text()
    table = text[text.index("## Errors") :].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if re.match(r"\| (\d{3}|other) \|", line)]
    return {code for row in rows for code in re.findall(r"`([a-z_]+)`", row)}


def test_the_error_table_lists_every_code_the_api_can_return() -> None:
    codes = {cls.code for cls in _subclasses(errors.DescryError)} - {"descry_error"}
    codes |= set(HTTP_CODES.values()) | {"validation_error", "internal_error", "http_error"}
    missing = codes - _documented_codes()
    assert not missing, f"docs/api.md's error table lacks {sorted(missing)}"


def _subclasses(cls: type[errors.DescryError]) -> list[type[errors.DescryError]]:
    found = []
    for sub in cls.__subclasses__():
        if sub.__module__ == errors.__name__:
            found += [sub, *_subclasses(sub)]
    return found
