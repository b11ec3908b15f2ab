"""API keys, scopes, rate limits and CORS on the real app (EchoBackend)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from descry.api.security import hash_key
from descry.config import ApiKey, Settings
from tests.security.conftest import app_client
from tests.security.corpus import picture

SCOPES: dict[str, list[str]] = {
    "caption": ["caption"],
    "jobs": ["jobs"],
    "both": ["caption", "jobs"],
    "admin": ["admin"],
}
KEYS = {name: f"k-{name}-0123456789" for name in SCOPES}


def keyed(settings: Settings, **security: object) -> Settings:
    keys = [ApiKey(name=name, sha256=hash_key(key), scopes=SCOPES[name]) for name, key in KEYS.items()]  # type: ignore[arg-type]
    update = {"api_keys": keys, "client_rate": 0.0, "key_rate": 0.0, **security}
    return settings.model_copy(update={"security": settings.security.model_copy(update=update)})


def auth(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[name]}"}


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with app_client(keyed(settings), ready_headers=auth("admin")) as c:
        yield c


def _upload() -> dict[str, tuple[str, bytes, str]]:
    return {"file": ("a.jpg", picture("JPEG", (32, 24)), "image/jpeg")}


CAPTION_ROUTES = ["/v1/caption", "/caption", "/infer", "/api/enrich"]


@pytest.mark.parametrize("route", CAPTION_ROUTES)
def test_caption_routes_need_the_caption_scope(route: str, client: TestClient) -> None:
    missing = client.post(route, files=_upload())
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "unauthorized"
    wrong = client.post(route, files=_upload(), headers={"X-API-Key": "not-a-key"})
    assert wrong.status_code == 401
    assert client.post(route, files=_upload(), headers=auth("jobs")).status_code == 403
    assert client.post(route, files=_upload(), headers=auth("caption")).status_code == 200
    assert client.post(route, files=_upload(), headers={"X-API-Key": KEYS["admin"]}).status_code == 200


def test_batch_routes_and_jobs(client: TestClient) -> None:
    files = [("files", ("a.jpg", picture("JPEG", (32, 24)), "image/jpeg"))]
    assert client.post("/v1/caption/batch", files=files).status_code == 401
    assert client.post("/v1/caption/batch", files=files, headers=auth("caption")).status_code == 200
    assert client.post("/batch-caption", files=files, headers=auth("caption")).status_code == 200
    assert client.post("/async-batch-caption", files=files, headers=auth("caption")).status_code == 403
    accepted = client.post("/async-batch-caption", files=files, headers=auth("both"))
    assert accepted.status_code == 202, accepted.text
    status_url = f"/async-batch-caption/status/{accepted.json()['task_id']}"
    assert client.get(status_url).status_code == 401
    assert client.get(status_url, headers=auth("caption")).status_code == 403
    assert client.get(status_url, headers=auth("both")).status_code == 200
    assert client.get("/v1/jobs").status_code == 401
    assert client.get("/v1/jobs", headers=auth("caption")).status_code == 403
    assert client.get("/v1/jobs", headers=auth("jobs")).status_code == 200


def test_health_and_metrics_need_a_key_unless_public(client: TestClient, settings: Settings) -> None:
    assert client.get("/health").status_code == 401
    assert client.get("/health", headers=auth("caption")).status_code == 200
    assert client.get("/metrics", headers=auth("caption")).status_code == 403
    assert client.get("/metrics", headers=auth("admin")).status_code == 200
    assert client.get("/openapi.json").status_code == 200
    with app_client(keyed(settings, public_health=True, public_metrics=True)) as public:
        assert public.get("/health").status_code == 200
        assert public.get("/metrics").status_code == 200
        assert public.post("/v1/caption", files=_upload()).status_code == 401


def test_errors_name_the_fix(client: TestClient) -> None:
    missing = client.post("/v1/caption", files=_upload()).json()["error"]
    assert "Authorization: Bearer" in missing["hint"]
    scope = client.get("/v1/jobs", headers=auth("caption")).json()["error"]
    assert scope["code"] == "forbidden" and "'jobs'" in scope["message"] and scope["hint"]


def test_per_key_and_per_client_rate_limits(settings: Settings) -> None:
    with app_client(keyed(settings, key_rate=0.2, key_burst=3), ready_headers=auth("admin")) as client:
        codes = [client.post("/v1/caption", files=_upload(), headers=auth("caption")).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        limited = client.post("/v1/caption", files=_upload(), headers=auth("caption"))
        assert limited.json()["error"]["code"] == "rate_limited"
        assert int(limited.headers["retry-after"]) >= 1
        assert limited.json()["request_id"] == limited.headers["x-request-id"]
        assert client.post("/v1/caption", files=_upload(), headers=auth("both")).status_code == 200
    open_keys = keyed(settings, client_rate=0.2, client_burst=4, public_health=True)
    with app_client(open_keys) as client:  # the readiness poll spends some of the budget
        codes = [client.post("/v1/caption", files=_upload(), headers=auth(name)).status_code
                 for name in ("caption", "both", "admin", "caption", "both")]
        assert 429 in codes
        assert client.post("/v1/caption", files=_upload(), headers=auth("admin")).status_code == 429


def test_cors_is_closed_by_default_and_opens_per_origin(client: TestClient, settings: Settings) -> None:
    preflight_headers = {"Origin": "https://mam.example", "Access-Control-Request-Method": "POST",
                         "Access-Control-Request-Headers": "authorization"}
    closed = client.options("/v1/caption", headers=preflight_headers)
    assert "access-control-allow-origin" not in closed.headers
    response = client.post("/v1/caption", files=_upload(), headers={**auth("caption"), "Origin": "https://x.example"})
    assert "access-control-allow-origin" not in response.headers
    with app_client(keyed(settings, cors_origins=["https://mam.example"]), ready_headers=auth("admin")) as c:
        preflight = c.options("/v1/caption", headers=preflight_headers)
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://mam.example"
        denied = c.post("/v1/caption", files=_upload(), headers={"Origin": "https://mam.example"})
        assert denied.status_code == 401
        assert denied.headers["access-control-allow-origin"] == "https://mam.example"
        other = c.post("/v1/caption", files=_upload(), headers={**auth("caption"), "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
