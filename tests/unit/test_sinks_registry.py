"""build_sinks, deliver_all isolation and the log sink's seed-compatible line."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from descry import schemas
from descry.config import Settings
from descry.errors import ConfigError, DeliveryError
from descry.sinks import build_sinks, deliver_all, known_sinks
from descry.sinks.jsonl import JsonlSink
from descry.sinks.log import LogSink
from descry.sinks.sidecar import SidecarSink


def _enrichment(**kw: object) -> schemas.Enrichment:
    data: dict[str, object] = {
        "name": "photo.jpg",
        "caption": "A red kite over a green field.",
        "tags": [schemas.Tag(name="kite", source="keyword"), schemas.Tag(name="outdoor", source="taxonomy")],
        "source": "florence-2-base",
        "reasoning_trace": ["attempt 1: accepted"],
    }
    data.update(kw)
    return schemas.Enrichment(**data)  # type: ignore[arg-type]


def _settings(tmp_path: Path, **sinks: object) -> Settings:
    return Settings(data_dir=tmp_path / "data", sinks=sinks or {})


class Exploding:
    def __init__(self, name: str, exc: Exception) -> None:
        self.name = name
        self.exc = exc

    async def deliver(self, enrichment: schemas.Enrichment, ref: schemas.ImageRef) -> None:
        raise self.exc

    async def close(self) -> None:
        return None


def test_known_sinks_lists_builtins() -> None:
    assert {"log", "webhook", "sidecar", "xmp", "jsonl"} <= set(known_sinks())


def test_build_sinks_in_order_without_duplicates(tmp_path: Path) -> None:
    sinks = build_sinks(["jsonl", "log", "LOG", "sidecar"], _settings(tmp_path))
    assert [s.name for s in sinks] == ["jsonl", "log", "sidecar"]
    assert isinstance(sinks[0], JsonlSink) and sinks[0].path == tmp_path / "data" / "enrichments.jsonl"


def test_default_sink_is_log() -> None:
    assert Settings().sinks.default == ["log"]


def test_unknown_sink_names_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        build_sinks(["log", "ftp", "carrier-pigeon"], _settings(tmp_path))
    text = str(info.value)
    assert "'ftp'" in text and "'carrier-pigeon'" in text
    for name in ("log", "webhook", "sidecar", "xmp", "jsonl"):
        assert name in text
    assert info.value.code == "config_error"


def test_webhook_without_url_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="DESCRY_SINKS__WEBHOOK__URL"):
        build_sinks(["webhook"], _settings(tmp_path))


async def test_deliver_all_isolates_failures(tmp_path: Path) -> None:
    ref = schemas.ImageRef(kind=schemas.SourceKind.path, name="photo.jpg", uri=str(tmp_path / "photo.jpg"))
    jsonl = JsonlSink(tmp_path / "out.jsonl")
    sinks = [
        Exploding("mam", DeliveryError("the MAM is down")),
        jsonl,
        Exploding("buggy", RuntimeError("boom")),
        SidecarSink("txt"),
    ]
    result = await deliver_all(sinks, _enrichment(), ref)
    assert list(result) == ["mam", "jsonl", "buggy", "sidecar"]
    assert result["jsonl"] is None and result["sidecar"] is None
    assert result["mam"] is not None and "the MAM is down" in result["mam"]
    assert result["buggy"] == "RuntimeError: boom"
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 1
    assert (tmp_path / "photo.txt").read_text() == "A red kite over a green field.\n"


async def test_log_sink_prints_the_seed_line(caplog: pytest.LogCaptureFixture) -> None:
    ref = schemas.ImageRef(kind=schemas.SourceKind.upload, name="upload.png")
    caplog.set_level(logging.INFO, logger="descry.mam")
    await LogSink().deliver(_enrichment(asset_id="asset-42"), ref)
    await LogSink().deliver(_enrichment(), ref)
    records = [r for r in caplog.records if r.name == "descry.mam"]
    assert len(records) == 2
    prefix = "[MAM] Updated asset asset-42 with metadata: "
    first = records[0].getMessage()
    assert first.startswith(prefix)
    metadata = json.loads(first[len(prefix) :])
    assert metadata["caption"] == "A red kite over a green field."
    assert [t["name"] for t in metadata["tags"]] == ["kite", "outdoor"]
    assert metadata["source"] == "florence-2-base"
    assert metadata["reasoning_trace"] == ["attempt 1: accepted"]
    assert records[1].getMessage().startswith("[MAM] Updated asset upload.png with metadata: ")
