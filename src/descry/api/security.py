"""Who may call the API and how often: hashed API keys with scopes, rate limits and CORS.

Keys are optional: once any key is configured every route needs one, except ``/health`` and
``/ready`` (``public_health``) and ``/metrics`` (``public_metrics``) when those say so. Keys are
stored as SHA-256 digests and compared in constant time. Rate limits are token buckets kept in
memory, one per key and one per client address (the peer, or the first untrusted
``X-Forwarded-For`` hop when the peer is a trusted proxy); ``/health`` and ``/ready`` are exempt
from both, so a probe behind a busy proxy is never refused for someone else's traffic. Every
refusal is a descry error rendered by ``api.errors``.

``python -m descry.api.security`` prints a new key and the digest to configure.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import sys
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Literal

from fastapi import FastAPI, Request
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from descry.api.errors import descry_error_handler
from descry.config import ApiKey, SecuritySettings
from descry.errors import AuthError, ConfigError, DescryError, Forbidden, RateLimited

AccessScope = Literal["caption", "jobs", "admin"]
PublicRoute = Literal["health", "metrics"]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
KEY_HINT = "send the key as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
MAX_BUCKETS = 100_000
# liveness and readiness probes: never rate limited (auth still applies unless public_health)
PROBE_PATHS = frozenset({"/health", "/ready"})


def hash_key(key: str) -> str:
    """The hex SHA-256 digest stored in settings for a key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    """A fresh random API key (256 bits)."""
    return "dsk_" + secrets.token_urlsafe(32)


class KeyRing:
    """The configured keys; matching hashes the presented key and compares every digest in constant time."""

    def __init__(self, keys: Iterable[ApiKey]) -> None:
        self._keys = [(bytes.fromhex(key.sha256), key) for key in keys]

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def match(self, presented: str) -> ApiKey | None:
        digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
        found: ApiKey | None = None
        for stored, key in self._keys:
            if hmac.compare_digest(digest, stored) and found is None:
                found = key
        return found


def presented_key(headers: Any) -> str | None:
    """The key from ``Authorization: Bearer <key>`` or ``X-API-Key``, if any."""
    auth = headers.get("authorization") or ""
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return str(value.strip())
    key = (headers.get("x-api-key") or "").strip()
    return key or None


class TokenBucket:
    """Per-name token buckets: ``rate`` tokens a second up to ``burst``; least recently used evicted."""

    def __init__(
        self, rate: float, burst: int, *, max_buckets: int = MAX_BUCKETS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.max_buckets = max_buckets
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def acquire(self, name: str) -> float:
        """Take one token: 0.0 when granted, else the seconds until one is available."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        tokens, last = self._buckets.pop(name, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[name] = (tokens, now)
        if len(self._buckets) > self.max_buckets:
            self._buckets.popitem(last=False)
        return wait

    def __len__(self) -> int:
        return len(self._buckets)


def parse_networks(entries: Iterable[str]) -> list[Network]:
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError as exc:
            raise ConfigError(
                f"trusted proxy {entry!r} is not an IP address or CIDR",
                hint="set DESCRY_SECURITY__TRUSTED_PROXIES to addresses such as 10.0.0.0/8",
            ) from exc
    return networks


def _in_networks(address: str, networks: list[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def client_address(scope: Scope, trusted: list[Network]) -> str:
    """The caller's address: the peer, or the first untrusted X-Forwarded-For hop behind trusted proxies."""
    peer = str((scope.get("client") or ("unknown", 0))[0])
    if not trusted or not _in_networks(peer, trusted):
        return peer
    forwarded = b",".join(v for k, v in scope.get("headers", []) if k == b"x-forwarded-for").decode("latin-1")
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _in_networks(hop, trusted):
            return hop
    return hops[0] if hops else peer


def is_probe(scope: Scope) -> bool:
    """Whether the request is for ``/health`` or ``/ready`` (below the app's root path, if any)."""
    path = str(scope.get("path", ""))
    root = str(scope.get("root_path", ""))
    if root and path.startswith(root):
        path = path[len(root) :]
    return path in PROBE_PATHS


class Guard:
    """Checks one request's key, scope and per-key rate; kept on ``app.state.guard``."""

    def __init__(self, settings: SecuritySettings) -> None:
        self.settings = settings
        self.keys = KeyRing(settings.api_keys)
        self.key_limiter = TokenBucket(settings.key_rate, settings.key_burst)

    def check(self, request: Request, scope: AccessScope, public: PublicRoute | None = None) -> ApiKey | None:
        if not self.keys.enabled:
            return None
        if public is not None and getattr(self.settings, f"public_{public}"):
            return None
        presented = presented_key(request.headers)
        if presented is None:
            raise AuthError("this server requires an API key", hint=KEY_HINT)
        key = self.keys.match(presented)
        if key is None:
            raise AuthError("the API key is not valid", hint=f"check the key; {KEY_HINT}")
        if scope not in key.scopes and "admin" not in key.scopes:
            raise Forbidden(
                f"the key {key.name!r} does not have the {scope!r} scope",
                hint=f"use a key whose scopes include {scope!r} (DESCRY_SECURITY__API_KEYS)",
            )
        wait = 0.0 if public == "health" else self.key_limiter.acquire(key.name)
        if wait:
            raise RateLimited(
                f"too many requests for the key {key.name!r}",
                retry_after=wait,
                hint="slow down and retry after the Retry-After seconds",
            )
        request.state.api_key = key.name
        return key


class ScopeCheck:
    """The dependency ``require_scope`` returns; ``api.openapi`` reads ``public`` to document 401/403."""

    def __init__(self, scope: AccessScope, public: PublicRoute | None) -> None:
        self.scope: AccessScope = scope
        self.public: PublicRoute | None = public

    async def __call__(self, request: Request) -> ApiKey | None:
        guard = getattr(request.app.state, "guard", None)
        if not isinstance(guard, Guard):
            raise ConfigError("the API's security guard is not installed", hint="build the app with create_app")
        return guard.check(request, self.scope, self.public)


def require_scope(
    scope: AccessScope, *, public: PublicRoute | None = None
) -> Callable[[Request], Awaitable[ApiKey | None]]:
    """A FastAPI dependency: the request's key must hold ``scope`` (when keys are configured)."""
    return ScopeCheck(scope, public)


class SecurityMiddleware:
    """Per-client rate limit, before any route reads the request (the body cap is in api.middleware)."""

    def __init__(self, app: ASGIApp, settings: SecuritySettings) -> None:
        self.app = app
        self.settings = settings
        self.trusted = parse_networks(settings.trusted_proxies)
        self.limiter = TokenBucket(settings.client_rate, settings.client_burst)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = client_address(scope, self.trusted)
        scope.setdefault("state", {})["client_address"] = client
        if not is_probe(scope) and (wait := self.limiter.acquire(client)):
            error = RateLimited(
                "too many requests from this client", retry_after=wait, hint="retry after the Retry-After seconds"
            )
            await self._refuse(scope, send, error)
            return
        await self.app(scope, receive, send)

    async def _refuse(self, scope: Scope, send: Send, error: DescryError) -> None:
        async def no_body() -> Message:
            return {"type": "http.disconnect"}

        response = await descry_error_handler(Request(scope, no_body), error)
        await response(scope, no_body, send)


def install_security(app: FastAPI, settings: SecuritySettings) -> None:
    """Guard and per-client rate limit; CORS only when origins are configured."""
    app.state.guard = Guard(settings)
    app.add_middleware(SecurityMiddleware, settings=settings)
    if settings.cors_origins:
        if "*" in settings.cors_origins and settings.cors_allow_credentials:
            raise ConfigError(
                "CORS with origin '*' cannot allow credentials",
                hint="list the exact origins in DESCRY_SECURITY__CORS_ORIGINS",
            )
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=settings.cors_allow_credentials,
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "X-Request-ID"],
            expose_headers=["Retry-After", "X-Request-ID"],
            max_age=600,
        )


def main(argv: list[str] | None = None) -> int:
    """Print a new key and its settings entry, or the digest of the key given as an argument."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in {"-h", "--help"}:
        print("usage: python -m descry.api.security [KEY]   (no KEY: generate one)")
        return 0
    key = args[0] if args else new_key()
    if not args:
        print(f"key:    {key}")
    print(f"sha256: {hash_key(key)}")
    print(f'entry:  {{"name": "<who>", "sha256": "{hash_key(key)}", "scopes": ["caption", "jobs"]}}')
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
