"""`descry batch --engine ray` on a local Ray cluster matches the local engine item for item.

Slow by nature: each run starts a Ray cluster (about 10 s on two cores) and loads the tiny model in
a Ray actor. Runs are kept to the minimum: one local run, one Ray run, one Ray resume.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from descry.batch import RayOptions
from descry.errors import ConfigError
from descry.jobs.ray_runner import placement
from tests.conftest import mixed_folder
from tests.integration.test_batch import jsonl_rows, run_batch_cli, summary
from tests.tiny.blip import build_tiny_blip

RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
ON_RAY = ("--engine", "ray", "--num-cpus", "2")


@pytest.fixture(scope="module")
def tiny_blip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_blip(tmp_path_factory.mktemp("tiny-blip"))


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_ray_engine_writes_what_the_local_engine_writes(tiny_blip: Path, tmp_path: Path) -> None:
    mixed_folder(tmp_path / "photos", count=12)
    common = ("photos", "-m", str(tiny_blip), "--max-tokens", "4", "--batch-size", "4")
    local = run_batch_cli(*common, "-o", "local.jsonl", cwd=tmp_path)
    on_ray = run_batch_cli(
        *common, *ON_RAY, "-o", "ray.parquet", "--sink", "jsonl", cwd=tmp_path,
        env={**RAY_ENV, "DESCRY_DATA_DIR": str(tmp_path / "data")},
    )
    assert on_ray.returncode == local.returncode == 1, on_ray.stderr[-3000:]

    got, want = summary(on_ray), summary(local)
    assert (got["total"], got["ok"], got["failed"], got["skipped"]) == (12, 10, 2, 0)
    assert sorted(map(json.dumps, got["failures"])) == sorted(map(json.dumps, want["failures"]))

    expected = jsonl_rows(tmp_path / "local.jsonl")
    rows = pq.read_table(tmp_path / "ray.parquet").to_pylist()
    assert sorted(row["name"] for row in rows) == sorted(expected)
    for row in rows:
        item, reference = json.loads(row["enrichment"]), expected[row["name"]]
        assert item.keys() == reference.keys()
        for key in ("caption", "tags", "source", "image", "attempts", "params", "chosen_attempt"):
            assert item[key] == reference[key], (row["name"], key)
        assert set(item["timings"]) == set(reference["timings"])
    delivered = [json.loads(line) for line in (tmp_path / "data/enrichments.jsonl").read_text().splitlines()]
    assert sorted(line["name"] for line in delivered) == sorted(expected)

    again = run_batch_cli(*common, *ON_RAY, "-o", "ray.parquet", cwd=tmp_path, env=RAY_ENV)
    data = summary(again)
    assert (data["ok"], data["failed"], data["skipped"]) == (0, 2, 10)
    assert pq.read_table(tmp_path / "ray.parquet").num_rows == 10


def test_placement_fits_the_cluster_or_says_why_not() -> None:
    assert placement({"CPU": 8, "GPU": 4}, RayOptions()) == (4, 1.0)
    assert placement({"CPU": 8, "GPU": 4}, RayOptions(gpus_per_replica=0.5)) == (8, 0.5)
    assert placement({"CPU": 8}, RayOptions()) == (1, 0.0)
    assert placement({"CPU": 8}, RayOptions(replicas=3)) == (3, 0.0)
    with pytest.raises(ConfigError, match="--gpus-per-replica 0"):
        placement({"CPU": 8}, RayOptions(gpus_per_replica=1))
    with pytest.raises(ConfigError, match="lower --replicas"):
        placement({"CPU": 8, "GPU": 2}, RayOptions(replicas=3))
    with pytest.raises(ConfigError, match="one CPU stays free"):
        placement({"CPU": 2}, RayOptions(replicas=2))
