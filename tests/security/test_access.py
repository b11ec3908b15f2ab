"""API keys, scopes, rate limits, client addresses and CORS on a minimal app."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from descry.api.errors import install_error_handlers
from descry.api.security import (
    KeyRing,
    TokenBucket,
    client_address,
    hash_key,
    install_security,
    main,
    parse_networks,
    presented_key,
    require_scope,
)
from descry.config import ApiKey, SecuritySettings
from descry.errors import ConfigError

CAPTION_KEY = "caption-key-0123456789"
JOBS_KEY = "jobs-key-0123456789"
ADMIN_KEY = "admin-key-0123456789"
KEYS = [
    ApiKey(name="mam", sha256=hash_key(CAPTION_KEY), scopes=["caption"]),
    ApiKey(name="batch", sha256=hash_key(JOBS_KEY), scopes=["jobs"]),
    ApiKey(name="ops", sha256=hash_key(ADMIN_KEY), scopes=["admin"]),
]


def mini_app(**security: Any) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    install_security(app, SecuritySettings(**security))

    @app.post("/caption", dependencies=[Depends(require_scope("caption"))])
    async def caption() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/jobs", dependencies=[Depends(require_scope("jobs"))])
    async def jobs() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/health", dependencies=[Depends(require_scope("admin", public="health"))])
    async def health() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/metrics", dependencies=[Depends(require_scope("admin", public="metrics"))])
    async def metrics() -> dict[str, bool]:
        return {"ok": True}

    return app


def assert_error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]


def test_without_keys_everything_is_open() -> None:
    client = TestClient(mini_app())
    assert client.post("/caption").status_code == 200
    assert client.get("/jobs").status_code == 200
    assert client.get("/metrics").status_code == 200


def test_keys_scopes_and_headers() -> None:
    client = TestClient(mini_app(api_keys=KEYS))
    assert_error(client.post("/caption"), 401, "unauthorized")
    assert "Authorization: Bearer" in client.post("/caption").json()["error"]["hint"]
    assert_error(client.post("/caption", headers={"Authorization": "Bearer wrong"}), 401, "unauthorized")
    assert_error(client.post("/caption", headers={"Authorization": f"Basic {CAPTION_KEY}"}), 401, "unauthorized")
    assert client.post("/caption", headers={"Authorization": f"Bearer {CAPTION_KEY}"}).status_code == 200
    assert client.post("/caption", headers={"X-API-Key": CAPTION_KEY}).status_code == 200
    assert_error(client.get("/jobs", headers={"X-API-Key": CAPTION_KEY}), 403, "forbidden")
    assert client.get("/jobs", headers={"X-API-Key": JOBS_KEY}).status_code == 200
    assert_error(client.post("/caption", headers={"X-API-Key": JOBS_KEY}), 403, "forbidden")
    for path in ("/jobs", "/metrics", "/health"):
        assert client.get(path, headers={"X-API-Key": ADMIN_KEY}).status_code == 200
    assert_error(client.get("/metrics"), 401, "unauthorized")
    assert_error(client.get("/health", headers={"X-API-Key": CAPTION_KEY}), 403, "forbidden")


def test_public_health_and_metrics_when_configured() -> None:
    client = TestClient(mini_app(api_keys=KEYS, public_health=True))
    assert client.get("/health").status_code == 200
    assert_error(client.get("/metrics"), 401, "unauthorized")
    client = TestClient(mini_app(api_keys=KEYS, public_metrics=True))
    assert client.get("/metrics").status_code == 200
    assert_error(client.get("/health"), 401, "unauthorized")


def test_keyring_matches_only_exact_keys() -> None:
    ring = KeyRing(KEYS)
    assert ring.enabled and not KeyRing([]).enabled
    assert ring.match(CAPTION_KEY) is KEYS[0]
    assert ring.match(CAPTION_KEY + " ") is None
    assert ring.match(hash_key(CAPTION_KEY)) is None
    assert ring.match("") is None


def test_presented_key_sources() -> None:
    assert presented_key({"authorization": "Bearer abc"}) == "abc"
    assert presented_key({"authorization": "bearer  abc "}) == "abc"
    assert presented_key({"x-api-key": "xyz"}) == "xyz"
    assert presented_key({"authorization": "Bearer "}) is None
    assert presented_key({}) is None


def test_token_bucket_refills_at_rate() -> None:
    now = [100.0]
    bucket = TokenBucket(2.0, 3, clock=lambda: now[0])
    assert [bucket.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.acquire("a") == pytest.approx(0.5)
    assert bucket.acquire("b") == 0.0
    now[0] += 0.5
    assert bucket.acquire("a") == 0.0
    assert bucket.acquire("a") > 0
    assert TokenBucket(0, 1).acquire("x") == 0.0


def test_token_bucket_memory_is_bounded() -> None:
    bucket = TokenBucket(1.0, 1, max_buckets=10)
    for i in range(1000):
        bucket.acquire(f"client-{i}")
    assert len(bucket) == 10


def test_per_key_rate_limit_answers_429_with_retry_after() -> None:
    client = TestClient(mini_app(api_keys=KEYS, key_rate=0.5, key_burst=2, client_rate=0))
    headers = {"X-API-Key": CAPTION_KEY}
    assert [client.post("/caption", headers=headers).status_code for _ in range(2)] == [200, 200]
    response = client.post("/caption", headers=headers)
    assert_error(response, 429, "rate_limited")
    assert int(response.headers["retry-after"]) >= 1
    assert client.get("/jobs", headers={"X-API-Key": JOBS_KEY}).status_code == 200


def test_per_client_rate_limit_counts_every_request() -> None:
    client = TestClient(mini_app(client_rate=0.1, client_burst=3))
    codes = [client.post("/caption").status_code for _ in range(5)]
    assert codes == [200, 200, 200, 429, 429]
    response = client.post("/caption")
    assert response.json()["error"]["code"] == "rate_limited"
    assert int(response.headers["retry-after"]) >= 1


def _scope(peer: str, forwarded: str | None = None) -> dict[str, Any]:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    return {"client": (peer, 1234), "headers": headers}


def test_client_address_trusts_forwarded_for_only_from_trusted_proxies() -> None:
    trusted = parse_networks(["10.0.0.0/8", "127.0.0.1"])
    assert client_address(_scope("203.0.113.9", "1.2.3.4"), trusted) == "203.0.113.9"
    assert client_address(_scope("10.0.0.2", "1.2.3.4"), trusted) == "1.2.3.4"
    assert client_address(_scope("10.0.0.2", "6.6.6.6, 1.2.3.4, 10.0.0.7"), trusted) == "1.2.3.4"
    assert client_address(_scope("10.0.0.2"), trusted) == "10.0.0.2"
    assert client_address(_scope("127.0.0.1", "8.8.8.8"), []) == "127.0.0.1"
    with pytest.raises(ConfigError):
        parse_networks(["not-a-network"])


def test_rate_limit_keys_on_forwarded_client_behind_trusted_proxy() -> None:
    app = mini_app(client_rate=0.1, client_burst=1, trusted_proxies=["10.0.0.0/8"])
    client = TestClient(app, client=("10.0.0.2", 50000))
    assert client.post("/caption", headers={"X-Forwarded-For": "1.1.1.1"}).status_code == 200
    assert client.post("/caption", headers={"X-Forwarded-For": "2.2.2.2"}).status_code == 200
    assert client.post("/caption", headers={"X-Forwarded-For": "1.1.1.1"}).status_code == 429
    spoofed = TestClient(app, client=("203.0.113.5", 50000))
    assert spoofed.post("/caption", headers={"X-Forwarded-For": "3.3.3.3"}).status_code == 200
    assert spoofed.post("/caption", headers={"X-Forwarded-For": "4.4.4.4"}).status_code == 429


def test_cors_closed_by_default() -> None:
    client = TestClient(mini_app())
    response = client.post("/caption", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in response.headers
    preflight = client.options(
        "/caption", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in preflight.headers


def test_cors_allows_only_configured_origins() -> None:
    client = TestClient(mini_app(cors_origins=["https://mam.example"]))
    ok = client.options(
        "/caption",
        headers={"Origin": "https://mam.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "X-API-Key"},
    )
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "https://mam.example"
    other = client.post("/caption", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    with pytest.raises(ConfigError):
        mini_app(cors_origins=["*"], cors_allow_credentials=True)


def test_key_helper_prints_a_digest(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["secret"]) == 0
    assert hash_key("secret") in capsys.readouterr().out
    assert main([]) == 0
    out = capsys.readouterr().out
    key = out.split("key:")[1].split()[0]
    assert hash_key(key) in out and len(key) > 40
