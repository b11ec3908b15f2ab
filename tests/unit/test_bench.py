"""Smoke test of the benchmark machinery on the tiny profile: every path runs, outputs are well formed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from descry.bench import get_profile, markdown, process, run_profile, update_results
from descry.bench.builders import padded_vocab
from descry.bench.phases import fixed_params
from descry.bench.workload import make_images, percentile
from descry.errors import ConfigError

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # the tiny profile runs every path on 2 busy cores

MACHINE = {"cpu": "x", "cores": 2, "python": "3", "versions": {}}
DECODE = {"images": 1, "source": "s", "mean_file_mb": 1, "target_pixels": 1, "full_ms": 2, "draft_ms": 1, "speedup": 2}


@pytest.fixture(scope="module")
def tiny_result(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("bench-out")
    work = tmp_path_factory.mktemp("bench-work") / "made-by-the-run"  # --workdir need not exist yet
    return run_profile(get_profile("tiny"), out_dir=out, workdir=work, log=lambda _line: None)


def test_tiny_profile_measures_every_path(tiny_result: dict) -> None:
    model = tiny_result["models"]["blip-base"]
    case = get_profile("tiny").models[0]
    assert model["baseline"]["images"] == case.baseline_images
    assert model["engine"]["images"] == case.engine_images
    for path in ("baseline", "engine"):
        summary = model[path]
        assert summary["images_per_second"] > 0
        assert summary["latency_p50_s"] <= summary["latency_p95_s"]
        assert set(summary["stage_s_per_image"]) == {"decode", "preprocess", "generate", "postprocess"}
        # min_new_tokens = max_new_tokens: every image generates exactly the fixed length
        assert summary["output_tokens"] == {"min": case.max_new_tokens, "max": case.max_new_tokens}
    assert model["engine"]["mean_batch_size"] > 1
    for variant in case.cpu_variants:  # the engine again with cheaper arithmetic, same images
        assert model[f"engine_{variant}"]["images"] == case.engine_images
        assert model[f"engine_{variant}"]["output_tokens"]["max"] == case.max_new_tokens
    assert model["engine"]["speedup"] == pytest.approx(
        model["engine"]["images_per_second"] / model["baseline"]["images_per_second"], rel=0.01
    )


def test_tiny_profile_runs_the_default_model_as_caption_does(tiny_result: dict) -> None:
    """Florence-2 with its task and 3 beams on every path; the default row uses descry's defaults (dtype auto)."""
    model = tiny_result["models"]["florence-2-base"]
    case = next(c for c in get_profile("tiny").models if c.key == "florence-2-base")
    assert model["task"] == "<CAPTION>" and model["num_beams"] == 3
    assert model["baseline"]["images"] == case.baseline_images
    default = model["engine_default"]
    assert default["images"] == case.engine_images and default["dtype"] in {"float32", "bfloat16"}
    assert default["max_batch_size"] == 8  # the CPU default, not the profile's batch size
    assert default["speedup"] > 0
    # Florence-2's decoder starts from one token and the output length is pinned, so every path agrees
    for path in ("baseline", "engine_default"):
        assert model[path]["output_tokens"] == {"min": case.max_new_tokens, "max": case.max_new_tokens}


def test_the_caption_command_is_timed_to_its_first_sidecar_and_exit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole-process phase with a stand-in command that writes a sidecar per image, one every 0.3 s."""
    script = tmp_path / "fake_descry.py"
    script.write_text(
        "import sys, time, pathlib\n"
        "bytearray(64 * 2**20)\n"  # some memory, so the peak RSS is the child's and not ours
        "for jpg in sorted(pathlib.Path(sys.argv[2]).glob('*.jpg')):\n"
        "    time.sleep(0.3)\n"
        "    jpg.with_suffix('.txt').write_text('a caption')\n"
    )
    monkeypatch.setattr(process, "descry_command", lambda: [sys.executable, str(script)])
    folder = tmp_path / "photos"
    assert process.camera_folder(folder, 3, (200, 150)) > 0
    assert len({p.read_bytes() for p in folder.glob("*.jpg")}) == 3  # no two files alike
    out = process.run_caption(folder, tmp_path / "model", tmp_path, 3)
    assert out["exit_code"] == 0 and out["ok"] == 3
    assert 0.3 <= out["first_caption_s"] < out["seconds"]
    assert out["peak_rss_mb"] >= 64
    out["source"], out["model"] = "3 x 200x150 JPEG", "stand-in"
    text = markdown({"profile": "t", "date": "d", "machine": MACHINE, "decode": DECODE, "models": {}, "process": out})
    assert "first caption after" in text


def test_tiny_profile_serves_http(tiny_result: dict) -> None:
    http = tiny_result["models"]["blip-base"]["http"]
    if "skipped" in http:
        pytest.skip(http["skipped"])
    profile = get_profile("tiny")
    assert list(http) == [f"c{c}" for c in profile.http_concurrency]
    for clients, level in zip(profile.http_concurrency, http.values(), strict=True):
        assert level["errors"] == 0, level["error_examples"]
        assert level["images"] == clients * profile.models[0].http_requests_per_client
        assert level["of_engine"] > 0


def test_tiny_profile_writes_json_and_markdown(tiny_result: dict, tmp_path: Path) -> None:
    written = Path(tiny_result["written_to"])
    assert written.name.startswith("tiny-") and written.suffix == ".json"
    data = json.loads(written.read_text())
    assert data["profile"] == "tiny"
    assert {"cpu", "cores", "versions"} <= set(data["machine"])
    assert data["decode"]["speedup"] > 0
    text = markdown(tiny_result)
    assert "| blip-base | baseline (1 generate/image) |" in text
    assert "| blip-base | engine (in-process) |" in text
    assert "| blip-base | engine, --dtype bfloat16 (not fp32) |" in text
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\nIntro kept.\n")
    update_results(results, tiny_result)
    update_results(results, tiny_result)
    body = results.read_text()
    assert body.count("<!-- bench:tiny -->") == 1 and "Intro kept." in body


def test_profiles_reject_unknown_names() -> None:
    with pytest.raises(ConfigError) as exc:
        get_profile("tpu")
    assert "cpu" in str(exc.value)
    with pytest.raises(ConfigError):
        get_profile("cpu", models=["llava"])
    chosen = get_profile("gpu", images=16, models=["qwen2.5-vl-7b"], batch_size=8)
    assert [(c.key, c.engine_images, c.batch_size) for c in chosen.models] == [("qwen2.5-vl-7b", 16, 8)]
    small = get_profile("cpu", tokens=16, baseline_images=1, process_images=0, models=["florence-2-base"])
    assert [(c.max_new_tokens, c.baseline_images, c.num_beams) for c in small.models] == [(16, 1, 3)]
    assert small.process_images == 0


def test_helpers() -> None:
    assert percentile([], 50) == 0.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == pytest.approx(2.5)
    assert percentile([5.0, 1.0], 100) == 5.0
    vocab = padded_vocab({"b": 1, "a": 0}, 5, start=2)
    assert vocab["a"] == 2 and vocab["b"] == 3 and sorted(vocab.values()) == [2, 3, 4]
    params = fixed_params(12)
    assert params.min_new_tokens == params.max_new_tokens == 12
    images = make_images(5, (32, 24), distinct=2)
    assert [name for name, _ in images] == [f"img{i:05d}.jpg" for i in range(5)]
    assert images[0][1] == images[2][1] != images[1][1]
