"""A server whose model cannot load says so, with the cause and its fix: /health, /ready and every caption route."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from descry.api.app import create_app
from descry.backends import hub
from descry.config import Settings
from tests.api_helpers import api_settings, jpeg


@pytest.fixture
def no_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    """A newcomer's machine: nothing cached, downloads allowed, the hub unreachable."""
    monkeypatch.setattr(hub, "offline", lambda: False)
    monkeypatch.setattr(hub, "cached", lambda model_id, revision=None: False)
    monkeypatch.setattr(hub, "reachable", lambda: False)


@pytest.mark.usefixtures("no_hub")
async def test_a_failed_load_is_503_model_load_failed_with_the_fix(settings: Settings) -> None:
    model = settings.model.model_copy(update={"name": "florence2-base", "device": "cpu"})
    app = create_app(api_settings(settings.model_copy(update={"model": model})))  # the real florence2 backend
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://descry.test", timeout=30) as client:
            health: dict[str, Any] = {}
            for _ in range(500):
                health = (await client.get("/health")).json()
                if health["model_status"] != "loading":
                    break
                await asyncio.sleep(0.02)
            ready = await client.get("/ready")
            photo = {"file": ("a.jpg", jpeg(), "image/jpeg")}
            answers = [await client.post("/v1/caption", files=photo), await client.post("/infer", files=photo)]
    assert health["status"] == "failed" and health["ok"] is False
    assert health["error_code"] == "model_not_found"
    assert "florence2-base" in health["error"] and "florence-2-base" in health["error"]
    for response in [ready, *answers]:
        assert response.status_code == 503, response.text
        error = response.json()["error"]
        assert error["code"] == "model_load_failed"
        assert "florence2-base" in error["message"] and "florence-2-base" in error["hint"]
        assert "wait" not in error["message"] + error["hint"]
        assert "retry-after" not in response.headers  # waiting does not help; fixing the model does
