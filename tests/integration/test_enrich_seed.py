"""The seed scenario end to end: MAX_TOKENS below 15 cuts the first caption short and the agent retries."""

from __future__ import annotations

from pathlib import Path

import pytest

from descry.config import Settings
from descry.core import Descry
from descry.enrich.agent import TRACE_INITIAL, TRACE_KEPT, TRACE_RETRY, TRACE_START
from descry.schemas import CaptionRequest
from descry.sources import upload_ref
from tests.conftest import image_bytes
from tests.tiny.blip import build_tiny_blip


@pytest.fixture(scope="module")
def tiny_blip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_blip(tmp_path_factory.mktemp("seed-blip"))


async def test_max_tokens_below_15_retries_with_more_tokens(
    tiny_blip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MAX_TOKENS", "6")
    monkeypatch.setenv("VLM_MODEL_ID", str(tiny_blip))
    settings = Settings()
    assert settings.model.max_new_tokens == 6
    async with Descry(settings) as descry:
        result = await descry.enrich(
            upload_ref("seed.jpg", image_bytes("JPEG", (64, 48))), CaptionRequest(asset_id="asset-1"), sinks=[]
        )
    enrichment = result.enrichment
    assert enrichment is not None
    attempts = enrichment.attempts
    assert len(attempts) >= 2
    assert attempts[0].params["max_new_tokens"] == 6
    assert attempts[1].params["max_new_tokens"] > 6
    assert "cut_off" in attempts[0].problems or "too_short" in attempts[0].problems
    trace = enrichment.reasoning_trace
    assert trace[0].startswith(TRACE_START)
    assert any(line.startswith(TRACE_INITIAL) for line in trace)
    assert any(line.startswith(TRACE_RETRY) for line in trace)
    assert trace[-1].startswith(TRACE_KEPT) or any(line.startswith(TRACE_KEPT) for line in trace)
    assert enrichment.source == str(tiny_blip)
    assert enrichment.asset_id == "asset-1"
    assert 0 <= enrichment.chosen_attempt < len(attempts)
    assert (enrichment.image.width, enrichment.image.height) == (64, 48)  # type: ignore[union-attr]
