"""/v1/jobs at its edges, on SQLite and PostgreSQL: page bounds and Idempotency-Key values."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from descry.config import Settings
from descry.errors import InputError
from descry.jobs.store import MAX_PAGE_OFFSET, SqlJobStore, submit_uploads
from tests.api_helpers import api_settings, jpeg, serve, upload
from tests.fakes.echo_backend import EchoBackend
from tests.jobs_helpers import DATABASES, database, open_store, path_inputs, spec

pytestmark = pytest.mark.timeout(120)
INT64_MAX = 2**63 - 1


@pytest.fixture(params=DATABASES)
async def client(
    request: pytest.FixtureRequest, settings: Settings, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    async with database(request.param, tmp_path) as (url, schema):
        config = api_settings(settings, jobs={"database_url": url, "database_schema": schema})
        async with serve(config, EchoBackend()) as (opened, _app):
            yield opened


@pytest.fixture(params=DATABASES)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlJobStore]:
    async with open_store(request.param, tmp_path) as opened:
        yield opened


def _error_code(response: httpx.Response) -> str:
    body = response.json()
    assert body["request_id"]
    return str(body["error"]["code"])


async def _submit(client: httpx.AsyncClient, headers: dict[str, str | bytes] | None = None) -> httpx.Response:
    return await client.post("/v1/jobs", files=[upload("a.jpg", jpeg())], data={"sinks": ""}, headers=headers)


async def test_results_offset_is_bounded_to_int64(client: httpx.AsyncClient) -> None:
    job_id = (await _submit(client)).json()["id"]
    url = f"/v1/jobs/{job_id}/results"
    largest = await client.get(url, params={"offset": INT64_MAX, "limit": 1000})
    assert largest.status_code == 200, largest.text
    assert largest.json()["items"] == []
    for offset in (INT64_MAX + 1, 2**64, 10**30, -1):
        refused = await client.get(url, params={"offset": offset})
        assert refused.status_code == 422, (offset, refused.text)
        assert _error_code(refused) == "validation_error"
    for limit in (0, 1001, 2**64):
        refused = await client.get(url, params={"limit": limit})
        assert refused.status_code == 422, (limit, refused.text)
        assert _error_code(refused) == "validation_error"


@pytest.mark.parametrize("key", ["", " ", "   ", " padded", "padded ", "tab\tinside", "x" * 201, "caf\u00e9"])
async def test_a_bad_idempotency_key_is_refused_every_time(client: httpx.AsyncClient, key: str) -> None:
    for _ in range(2):  # the second submission used to hit the unique column: 500
        refused = await _submit(client, {"Idempotency-Key": key.encode("latin-1")})
        assert refused.status_code == 422, refused.text
        assert _error_code(refused) == "validation_error"
    assert (await client.get("/v1/jobs")).json() == []


@pytest.mark.parametrize("key", ["k", "import 42", "x" * 200, "!~"])
async def test_a_good_idempotency_key_returns_the_same_job(client: httpx.AsyncClient, key: str) -> None:
    first = await _submit(client, {"Idempotency-Key": key})
    again = await _submit(client, {"Idempotency-Key": key})
    assert (first.status_code, again.status_code) == (202, 202), again.text
    assert first.json()["id"] == again.json()["id"]
    assert len((await client.get("/v1/jobs")).json()) == 1


async def test_the_store_pages_safely_at_the_largest_offset(store: SqlJobStore) -> None:
    job = await store.create_job(spec(), path_inputs(3))
    assert MAX_PAGE_OFFSET == INT64_MAX
    assert await store.results(job, offset=INT64_MAX, limit=INT64_MAX) == []
    assert await store.results(job, offset=2**64, limit=2**64) == []  # clamped: no row lies there
    assert [r.index for r in await store.results(job, offset=1, limit=2**64)] == [1, 2]
    assert await store.list_jobs(offset=2**64, limit=2**64) == []
    for offset, limit in ((-1, 10), (0, 0), (0, -5)):
        with pytest.raises(InputError):
            await store.results(job, offset=offset, limit=limit)
        with pytest.raises(InputError):
            await store.list_jobs(offset=offset, limit=limit)


async def test_the_store_refuses_an_empty_idempotency_key(store: SqlJobStore, tmp_path: Path) -> None:
    for key in ("", "  ", "x" * 201):
        with pytest.raises(InputError):
            await store.create_job(spec(), path_inputs(1), idempotency_key=key)
        with pytest.raises(InputError):
            await submit_uploads(store, tmp_path, spec(), [("a.jpg", jpeg())], idempotency_key=key)
    assert await store.list_jobs() == []
    assert not (tmp_path / "uploads").exists() or not any((tmp_path / "uploads").iterdir())
    first = await store.create_job(spec(), path_inputs(1), idempotency_key="k-1")
    assert await store.create_job(spec(), path_inputs(2), idempotency_key="k-1") == first


async def test_a_job_id_with_a_nul_byte_is_not_found(client: httpx.AsyncClient) -> None:
    # PostgreSQL refuses NUL in a text parameter: this was a 500 there
    for method, path in (
        ("GET", "/v1/jobs/%00"),
        ("GET", "/v1/jobs/a%00b/results"),
        ("DELETE", "/v1/jobs/%00"),
        ("GET", "/async-batch-caption/status/%00"),
    ):
        response = await client.request(method, path)
        assert response.status_code == 404, (path, response.text)
        assert _error_code(response) == "not_found"
