"""Every face delivers through the same sinks, so the same images give byte-identical files.

Faces driven here: `descry caption` (its run and its -f/-o sink choice), `descry batch` (run_batch
with a sidecar sink), the API (`/v1/caption` naming a server path and the sidecar sink) and a job
worker, and `descry batch --engine ray`. Each writes .txt sidecars into its own output folder,
mirroring the input tree below the folder (the CLI's input, the server's allowed root). The Ray run
starts one local cluster (about 10 s) whose workers run the same EchoBackend (``tests.fakes.ray_echo``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from descry.batch import BatchOutput, RayOptions, run_batch
from descry.cli.caption import choose_cli_sinks
from descry.config import Settings
from descry.core import Descry
from descry.engine.pipeline import Engine
from descry.jobs.service import JobService
from descry.runner import CaptionRun
from descry.schemas import CaptionRequest, ImageRef
from descry.sources import path_ref
from tests.api_helpers import api_settings, serve
from tests.conftest import mixed_folder
from tests.fakes.echo_backend import EchoBackend

REPO = Path(__file__).resolve().parents[2]
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def _files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def _server_settings(settings: Settings, root: Path, out: Path) -> Settings:
    config = api_settings(settings, sources={"allowed_roots": [root]})
    sidecar = config.sinks.sidecar.model_copy(update={"format": "txt", "output_dir": out})
    return config.model_copy(update={"sinks": config.sinks.model_copy(update={"sidecar": sidecar})})


async def _cli_caption(settings: Settings, root: Path, refs: list[ImageRef], out: Path) -> None:
    pool, names, _ = choose_cli_sinks(settings, "txt", out, None, [root], urls_only=False)
    engine = Engine(settings, backend=EchoBackend())
    run = CaptionRun(settings, CaptionRequest(), pool, names, engine=engine)
    await run.run(refs)
    await engine.stop()


async def _cli_batch(
    settings: Settings, root: Path, refs: list[ImageRef], out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _server_settings(settings, root, out)
    monkeypatch.setattr("descry.core.Engine", lambda s: Engine(s, backend=EchoBackend()))
    output = BatchOutput(out.parent / "batch-results.jsonl")
    result = await run_batch(config, CaptionRequest(), refs, output, sinks=["sidecar"])
    assert result.ok and result.summary.ok == len(refs)


async def _ray_batch(
    settings: Settings, root: Path, refs: list[ImageRef], out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`descry batch --engine ray --sink sidecar`: the replicas enrich, the driver delivers."""
    import ray

    for name, value in RAY_ENV.items():
        monkeypatch.setenv(name, value)
    env = {"env_vars": {"PYTHONPATH": str(REPO)}, "worker_process_setup_hook": "tests.fakes.ray_echo.use_echo_backend"}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env=env)
    try:
        config = _server_settings(settings, root, out)
        output = BatchOutput(out.parent / "ray-results.jsonl")
        options = RayOptions(num_cpus=2)
        result = await run_batch(config, CaptionRequest(), refs, output, sinks=["sidecar"], engine="ray", ray=options)
    finally:
        ray.shutdown()
    assert result.ok and result.summary.ok == len(refs)


async def _api(settings: Settings, root: Path, refs: list[ImageRef], out: Path) -> None:
    async with serve(_server_settings(settings, root, out), EchoBackend()) as (client, _app):
        for ref in refs:
            response = await client.post("/v1/caption", json={"path": ref.uri, "sinks": ["sidecar"]})
            assert response.status_code == 200, response.text
            assert response.json()["delivery"] == {"sidecar": None}


async def _job_worker(settings: Settings, root: Path, refs: list[ImageRef], out: Path) -> None:
    config = _server_settings(settings, root, out)
    async with Descry(config, engine=Engine(config, backend=EchoBackend())) as descry:
        service = JobService(config, descry)
        await service.open()
        job_id = await service.submit(CaptionRequest(sinks=["sidecar"]), others=refs)
        await service.worker().run_until_idle(job_id)
        await service.close()


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_every_face_writes_the_same_bytes(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "photos"
    good = mixed_folder(root, count=8)["good"]
    refs = [path_ref(p) for p in good]
    outs = {face: tmp_path / "out" / face for face in ("caption", "batch", "ray", "api", "worker")}
    await _cli_caption(settings, root, refs, outs["caption"])
    await _api(settings, root, refs, outs["api"])
    await _job_worker(settings, root, refs, outs["worker"])
    await _cli_batch(settings, root, refs, outs["batch"], monkeypatch)
    await _ray_batch(settings, root, refs, outs["ray"], monkeypatch)
    written = {face: _files(out) for face, out in outs.items()}
    expected = {str(p.relative_to(root).with_suffix(".txt")) for p in good}
    assert set(written["caption"]) == expected
    assert any("/" in name for name in expected)  # the tree below the root is mirrored
    assert all(data.endswith(b"\n") and data.strip() for data in written["caption"].values())
    for face in ("batch", "ray", "api", "worker"):
        assert written[face] == written["caption"], face
