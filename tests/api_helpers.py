"""Helpers for API tests: an app around the scripted EchoBackend, served in-process over httpx."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi import FastAPI

from descry.api.app import create_app
from descry.config import Settings
from descry.engine.pipeline import Engine
from tests.conftest import image_bytes
from tests.fakes.echo_backend import EchoBackend

PROMPT = "describe the picture in a few plain words"


def api_settings(settings: Settings, **sections: dict[str, Any]) -> Settings:
    """Test settings: no per-client rate limit, plus section overrides like ``batching={"max_queue": 2}``."""
    update: dict[str, Any] = {"security": settings.security.model_copy(update={"client_rate": 0.0})}
    for name, values in sections.items():
        update[name] = getattr(settings, name).model_copy(update=values)
    return settings.model_copy(update=update)


def jpeg(size: tuple[int, int] = (64, 48)) -> bytes:
    return image_bytes("JPEG", size)


def upload(name: str, data: bytes, ctype: str = "image/jpeg") -> tuple[str, tuple[str, bytes, str]]:
    return ("files", (name, data, ctype))


async def wait_until(client: httpx.AsyncClient, status: str, timeout: float = 10.0) -> dict[str, Any]:
    """Poll /health until the model status is ``status``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        body: dict[str, Any] = (await client.get("/health")).json()
        if body["model_status"] == status:
            return body
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"model stayed {body['model_status']!r}, expected {status!r}")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def serve(
    settings: Settings, backend: EchoBackend | None = None, *, ready: bool = True
) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    """Run the app's lifespan and yield a client talking to it in-process."""
    engine = Engine(settings, backend=backend or EchoBackend())
    app = create_app(settings, engine=engine)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://descry.test", timeout=30
        ) as client:
            if ready:
                await wait_until(client, "ready")
            yield client, app
