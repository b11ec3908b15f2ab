"""`descry batch` delivers through one SinkPool: the output file is a sink, and resume asks it.

In process, on the scripted EchoBackend (no model, no Ray): the Ray path hands its results to the
same delivery, which tests/integration/test_same_bytes.py checks byte for byte.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from descry.batch import BatchOutput, run_batch
from descry.config import Settings
from descry.engine.pipeline import Engine
from descry.errors import InputError
from descry.schemas import CaptionRequest, ImageRef
from descry.sources import path_ref
from tests.conftest import mixed_folder
from tests.fakes.echo_backend import EchoBackend


@pytest.fixture
def engines(monkeypatch: pytest.MonkeyPatch) -> list[Engine]:
    """Every Descry a batch builds runs the EchoBackend; the list holds the engines built."""
    built: list[Engine] = []

    def make(settings: Settings) -> Engine:
        built.append(Engine(settings, backend=EchoBackend()))
        return built[-1]

    monkeypatch.setattr("descry.core.Engine", make)
    return built


def _refs(root: Path, count: int = 5) -> list[ImageRef]:
    return [path_ref(p) for p in mixed_folder(root, count=count)["good"]]


def _with_sidecar_dir(settings: Settings, out: Path) -> Settings:
    sidecar = settings.sinks.sidecar.model_copy(update={"output_dir": out})
    return settings.model_copy(update={"sinks": settings.sinks.model_copy(update={"sidecar": sidecar})})


async def test_a_failing_sink_is_a_delivery_failure_and_resume_asks_the_output(
    settings: Settings, tmp_path: Path, engines: list[Engine]
) -> None:
    refs = _refs(tmp_path / "photos")
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the sidecar folder should be\n")
    config = _with_sidecar_dir(settings, blocked)
    output = BatchOutput(tmp_path / "out.jsonl")

    first = await run_batch(config, CaptionRequest(), refs, output, sinks=["sidecar", "jsonl"])
    assert (first.summary.ok, first.summary.failed, first.summary.skipped) == (len(refs), 0, 0)
    assert not first.ok
    assert sorted(f.name for f in first.delivery_failures) == sorted(r.name for r in refs)
    assert {f.code for f in first.delivery_failures} == {"delivery_failed"}
    delivered = (settings.data_dir / "enrichments.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["name"] for line in delivered) == sorted(r.name for r in refs)

    again = await run_batch(config, CaptionRequest(), refs, BatchOutput(output.path), sinks=["sidecar"])
    assert (again.summary.ok, again.summary.failed, again.summary.skipped) == (0, 0, len(refs))
    assert again.ok
    assert len(engines) == 1  # nothing left to do: no model was built the second time
    assert len(output.path.read_text().splitlines()) == len(refs)


async def test_an_unwritable_output_fails_the_image_before_any_other_sink(
    settings: Settings, tmp_path: Path, engines: list[Engine]
) -> None:
    refs = _refs(tmp_path / "photos", count=4)
    (tmp_path / "taken").write_text("a file where the output's folder should be\n")
    output = BatchOutput(tmp_path / "taken" / "out.jsonl")

    result = await run_batch(settings, CaptionRequest(), refs, output, sinks=["jsonl"])
    assert (result.summary.ok, result.summary.failed) == (0, len(refs))
    assert {f.code for f in result.summary.failures} == {"output_error"}
    assert not result.delivery_failures
    assert not (settings.data_dir / "enrichments.jsonl").exists()


async def test_parquet_output_is_read_as_the_run_starts(
    settings: Settings, tmp_path: Path, engines: list[Engine]
) -> None:
    refs = _refs(tmp_path / "photos", count=4)
    first = await run_batch(settings, CaptionRequest(), refs, BatchOutput(tmp_path / "out.parquet"))
    assert first.summary.ok == len(refs)
    again = await run_batch(settings, CaptionRequest(), refs, BatchOutput(tmp_path / "out.parquet"))
    assert (again.summary.ok, again.summary.skipped) == (0, len(refs))

    (tmp_path / "broken.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(InputError):
        await run_batch(settings, CaptionRequest(), refs, BatchOutput(tmp_path / "broken.parquet"))
    assert len(engines) == 1  # refused before any work
