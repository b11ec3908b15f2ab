"""/health and /ready are never rate limited: a probe behind a busy proxy must not get 429."""

from __future__ import annotations

from fastapi.testclient import TestClient

from descry.api.security import hash_key, is_probe
from descry.config import ApiKey, Settings
from tests.security.conftest import app_client
from tests.security.corpus import picture

KEY = "k-probe-0123456789"


def limited(settings: Settings, **security: object) -> Settings:
    """One request a minute per client address (all of the test client's traffic, as behind a proxy) and per key."""
    update = {"client_rate": 1 / 60, "client_burst": 1, "key_rate": 1 / 60, "key_burst": 1, **security}
    return settings.model_copy(update={"security": settings.security.model_copy(update=update)})


def _caption(client: TestClient, headers: dict[str, str] | None = None) -> int:
    files = {"file": ("a.jpg", picture("JPEG", (32, 24)), "image/jpeg")}
    return client.post("/v1/caption", files=files, headers=headers).status_code


def test_probes_skip_the_per_client_limit(settings: Settings) -> None:
    with app_client(limited(settings)) as client:
        assert _caption(client) == 200
        refused = client.post("/v1/caption", files={"file": ("a.jpg", picture("JPEG", (32, 24)), "image/jpeg")})
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limited"
        for _ in range(20):  # the address is out of tokens, yet every probe answers
            assert client.get("/health").status_code == 200
            assert client.get("/ready").status_code == 200
        assert client.get("/v1/models").status_code == 429
        assert client.get("/metrics").status_code == 429


def test_probes_skip_the_per_key_limit_and_still_need_the_key(settings: Settings) -> None:
    keys = [ApiKey(name="probe", sha256=hash_key(KEY), scopes=["caption"])]
    headers = {"Authorization": f"Bearer {KEY}"}
    with app_client(limited(settings, api_keys=keys, client_rate=0.0), ready_headers=headers) as client:
        assert _caption(client, headers) == 200
        assert _caption(client, headers) == 429
        for _ in range(20):
            assert client.get("/health", headers=headers).status_code == 200
            assert client.get("/ready", headers=headers).status_code == 200
        unauthenticated = client.get("/health")
        assert unauthenticated.status_code == 401 and unauthenticated.json()["error"]["code"] == "unauthorized"
        assert client.get("/ready").status_code == 401
    with app_client(limited(settings, api_keys=keys, public_health=True)) as public:
        for _ in range(5):
            assert public.get("/health").status_code == 200
            assert public.get("/ready").status_code == 200


def test_only_the_probe_paths_are_exempt() -> None:
    assert is_probe({"type": "http", "path": "/health"})
    assert is_probe({"type": "http", "path": "/api/ready", "root_path": "/api"})
    for path in ("/healthz", "/health/x", "/v1/caption", "/ready/", "/metrics", "/api/health"):
        assert not is_probe({"type": "http", "path": path}), path
