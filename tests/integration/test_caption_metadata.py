"""`descry caption`'s runs for photographers, on the echo backend: a dry run changes no byte, an empty
caption fails and writes nothing, colliding sidecar names become distinct, a policy's pre-check skips
images before the model runs."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from descry.backends.base import Generation
from descry.cli import caption as cli
from descry.config import Settings
from descry.engine.pipeline import Engine
from descry.runner import CaptionRun, RunSummary
from descry.schemas import CaptionRequest, ImageRef
from descry.sources import expand
from tests.conftest import image_bytes
from tests.fakes.echo_backend import EchoBackend


class BlankBackend(EchoBackend):
    """A model that answers with nothing usable, whatever it is asked."""

    def postprocess(self, batch: Any, raw: Any) -> list[Generation]:
        return [Generation(text=" \n ", output_tokens=1) for _ in raw]


class WidthsSeen(EchoBackend):
    """The echo backend, remembering the width of every image it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.widths: set[int] = set()

    def preprocess(self, items: Any) -> Any:
        self.widths.update(item.image.width for item in items)
        return super().preprocess(items)


def _snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every file below ``root``: its hash and modification time."""
    return {
        str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _photos(root: Path) -> Path:
    root.mkdir()
    (root / "photo.jpg").write_bytes(image_bytes("JPEG", (40, 30)))
    (root / "photo.png").write_bytes(image_bytes("PNG", (50, 30)))
    (root / "photo.webp").write_bytes(image_bytes("WEBP", (60, 30)))
    (root / "other.jpg").write_bytes(image_bytes("JPEG", (70, 30)))
    return root


async def _run(
    settings: Settings,
    root: Path,
    *,
    fmt: cli.OutputFormat | None = None,
    sinks: Sequence[str] | None = None,
    backend: EchoBackend | None = None,
    dry_run: bool = False,
    skip_existing: bool = False,
) -> tuple[RunSummary, list[str], list[ImageRef]]:
    """What `descry caption ROOT [-f FMT] [--sink ...] [--dry-run] [--skip-existing]` runs, on a fake model."""
    refs = expand([str(root)], settings=settings.sources)
    pool, names, _ = cli.choose_cli_sinks(settings, fmt, None, list(sinks) if sinks else None, [root], urls_only=False)
    if dry_run:
        pool = cli.dry_run_pool(settings, pool, names)
    engine = Engine(settings, backend=backend or EchoBackend())
    run = CaptionRun(settings, CaptionRequest(), pool, names, engine=engine)
    err = Console(file=io.StringIO())
    try:
        summary, notes = await cli._pending_then_run(err, run, refs, skip_existing, quiet=True, to_stdout=False)
    finally:
        await engine.stop()
    return summary, notes, refs


async def test_colliding_names_get_distinct_sidecars_and_are_listed(settings: Settings, tmp_path: Path) -> None:
    root = _photos(tmp_path / "photos")
    summary, notes, _ = await _run(settings, root)
    assert (summary.ok, summary.failed) == (4, 0)
    texts = {p.name: p.read_text() for p in root.glob("*.txt")}
    assert sorted(texts) == ["other.txt", "photo.jpg.txt", "photo.png.txt", "photo.webp.txt"]
    assert len(set(texts.values())) == 4  # four results in four files: none lost
    assert sorted(n.split(": ")[1].split(" ")[0] for n in notes) == [
        str(root / "photo.jpg"), str(root / "photo.png"), str(root / "photo.webp")
    ]  # fmt: skip

    # a second run resumes with the same names, so nothing is redone
    again, _, _ = await _run(settings, root, skip_existing=True)
    assert (again.ok, again.skipped) == (0, 4)


async def test_a_person_s_txt_sidecar_is_kept_and_the_image_skipped_before_the_model(
    settings: Settings, tmp_path: Path
) -> None:
    root = _photos(tmp_path / "photos")
    (root / "other.txt").write_text("my own words\n")
    model = WidthsSeen()
    summary, notes, _ = await _run(settings, root, backend=model)
    assert (summary.ok, summary.skipped) == (3, 1)
    assert (root / "other.txt").read_text() == "my own words\n"
    assert 70 not in model.widths and {40, 50, 60} <= model.widths  # the kept image never reached the model
    assert any("left alone" in note for note in notes)

    overwrite = settings.model_copy(update={"sinks": settings.sinks.model_copy(update={"policy": "overwrite"})})
    summary, _, _ = await _run(overwrite, root)
    assert summary.ok == 4 and (root / "other.txt").read_text() != "my own words\n"


async def test_an_empty_caption_fails_writes_nothing_and_is_retried(settings: Settings, tmp_path: Path) -> None:
    pytest.importorskip("pyexiv2")
    root = _photos(tmp_path / "photos")
    embed = settings.sinks.xmp.model_copy(update={"mode": "embed"})
    config = settings.model_copy(update={"sinks": settings.sinks.model_copy(update={"xmp": embed})})
    before = _snapshot(root)
    summary, _, _ = await _run(config, root, fmt="txt", sinks=["xmp"], backend=BlankBackend())
    assert (summary.ok, summary.failed) == (0, 4)
    assert {f.code for f in summary.failures} == {"empty_caption"}
    assert _snapshot(root) == before  # no sidecar, no field blanked, no byte changed

    # --skip-existing does not count them as done: the next run tries them again
    again, _, _ = await _run(config, root, fmt="txt", sinks=["xmp"], skip_existing=True)
    assert (again.ok, again.skipped) == (4, 0)


@pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool is not installed")
async def test_dry_run_changes_no_byte_and_reports_every_field(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("pyexiv2")
    root = _photos(tmp_path / "photos")
    (root / "other.txt").write_text("my own words\n")
    before = _snapshot(root)
    summary, _, _ = await _run(settings, root, fmt="txt", sinks=["xmp", "jsonl"], dry_run=True)
    assert _snapshot(root) == before
    assert not list(Path.cwd().glob("*.jsonl")) and not (settings.data_dir / "enrichments.jsonl").exists()
    plans = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    by_sink: dict[str, list[dict[str, Any]]] = {}
    for plan in plans:
        for change in plan["changes"]:
            by_sink.setdefault(change["sink"], []).append({**change, "name": plan["name"]})
    assert summary.ok == 4  # other.jpg is captioned too: its XMP is still to be written
    actions = {Path(c["file"]).name: (c["action"], c["before"]) for c in by_sink["sidecar"]}
    assert actions == {
        "photo.jpg.txt": ("write", None),
        "photo.png.txt": ("write", None),
        "photo.webp.txt": ("write", None),
        "other.txt": ("keep", "my own words"),  # a person's sidecar
    }
    xmp_fields = {c["field"] for c in by_sink["xmp"]}
    assert {"XMP dc:description[x-default]", "XMP dc:subject"} <= xmp_fields
    assert all(c["before"] is None and c["after"] for c in by_sink["xmp"] if c["field"].startswith("XMP dc:desc"))
    assert [c["field"] for c in by_sink["jsonl"]] == ["result"] * 4


def _cli(args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: EchoBackend | None = None) -> Any:
    """The real `descry` command in this process, its model the echo backend, its data dir in tmp_path."""
    from typer.testing import CliRunner

    from descry.cli import app

    monkeypatch.setattr("descry.core.Engine", lambda s, **kw: Engine(s, backend=model or EchoBackend()))
    env = {"DESCRY_DATA_DIR": str(tmp_path / "data"), "DESCRY_DECODE_THREADS": "2"}
    return CliRunner().invoke(app, args, env=env)


@pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool is not installed")
def test_one_flag_xmp_and_batch_sink_xmp_leave_the_working_directory_alone(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("pyexiv2")
    root = _photos(tmp_path / "photos")
    originals = {p.name: p.read_bytes() for p in root.iterdir()}
    result = _cli(["caption", str(root), "--xmp", "-q"], tmp_path, monkeypatch)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in root.glob("*.xmp")) == [f"{name}.xmp" for name in sorted(originals)]
    assert not list(root.glob("*.txt"))  # --xmp alone: only the XMP
    assert {p.name: p.read_bytes() for p in root.iterdir() if p.suffix != ".xmp"} == originals

    for sidecar in root.glob("*.xmp"):
        sidecar.unlink()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    result = _cli(["batch", str(root), "--sink", "xmp", "-q"], tmp_path, monkeypatch)
    assert result.exit_code == 0, result.output
    assert not list(cwd.iterdir())  # no results.jsonl dropped in the working directory
    assert len(list(root.glob("*.xmp"))) == 4
    assert len(list((tmp_path / "data" / "batches").glob("*.jsonl"))) == 1  # the resume record


@pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool is not installed")
async def test_api_dry_run_reports_changes_and_the_request_policy_applies(settings: Settings, tmp_path: Path) -> None:
    pytest.importorskip("pyexiv2")
    from tests.api_helpers import api_settings, serve

    root = _photos(tmp_path / "photos")
    (root / "other.txt").write_text("my own words\n")
    config = api_settings(settings, sources={"allowed_roots": [root]})
    before = _snapshot(root)
    photo = str(root / "other.jpg")
    async with serve(config, EchoBackend()) as (client, _app):
        body = {"path": photo, "sinks": ["sidecar", "xmp"], "dry_run": True}
        response = await client.post("/v1/caption", json=body)
        assert response.status_code == 200, response.text
        data = response.json()
        assert data["delivery"] is None
        changes = {(c["sink"], c["field"]): c for c in data["changes"]}
        assert changes[("sidecar", "txt sidecar")]["action"] == "keep"
        assert changes[("xmp", "XMP dc:description[x-default]")]["action"] == "write"
        assert _snapshot(root) == before  # no byte written

        written = await client.post("/v1/caption", json={"path": photo, "sinks": ["sidecar"], "policy": "overwrite"})
        assert written.status_code == 200 and written.json()["delivery"] == {"sidecar": None}
        assert (root / "other.txt").read_text() != "my own words\n"

        job = await client.post("/v1/jobs", json={"sources": [photo], "dry_run": True})
        assert job.status_code == 400 and job.json()["error"]["code"] == "invalid_input", job.text
        assert "dry run" in job.json()["error"]["message"]


@pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool is not installed")
def test_batch_policy_skip_leaves_captioned_images_alone_before_the_model(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("pyexiv2")
    import subprocess

    root = _photos(tmp_path / "photos")
    subprocess.run(
        ["exiftool", "-q", "-overwrite_original", "-IPTC:Caption-Abstract=Ann's own words", str(root / "photo.jpg")],
        check=True,
    )
    model = WidthsSeen()
    result = _cli(["batch", str(root), "--sink", "xmp", "--policy", "skip", "-q"], tmp_path, monkeypatch, model)
    assert result.exit_code == 0, result.output
    assert 40 not in model.widths and {50, 60, 70} <= model.widths  # photo.jpg never reached the model
    assert sorted(p.name for p in root.glob("*.xmp")) == ["other.jpg.xmp", "photo.png.xmp", "photo.webp.xmp"]


@pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool is not installed")
def test_a_dng_is_captioned_into_a_sidecar_and_never_written_to(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("pyexiv2")
    pytest.importorskip("rawpy")
    import subprocess

    from tests.fakes.dng import make_dng

    root = tmp_path / "raw"
    root.mkdir()
    (root / "DSC_0001.DNG").write_bytes(make_dng(256, 192))
    (root / "DSC_0001.JPG").write_bytes(image_bytes("JPEG", (64, 48)))  # a RAW+JPEG pair, as cameras write them
    raw_bytes = (root / "DSC_0001.DNG").read_bytes()
    monkeypatch.setenv("DESCRY_SINKS__XMP__SIDECAR_NAME", "stem")  # Lightroom's naming
    result = _cli(["caption", str(root), "--xmp", "--embed", "-q"], tmp_path, monkeypatch)
    assert result.exit_code == 0, result.output
    assert (root / "DSC_0001.DNG").read_bytes() == raw_bytes  # --embed never writes into a RAW
    assert sorted(p.name for p in root.glob("*.xmp")) == ["DSC_0001.xmp"]  # the JPEG got its caption embedded
    out = subprocess.run(["exiftool", "-j", "-G1", str(root / "DSC_0001.xmp"), str(root / "DSC_0001.JPG")],
                         check=True, capture_output=True, text=True).stdout  # fmt: skip
    sidecar, jpeg = json.loads(out)
    assert sidecar["XMP-dc:Description"] and jpeg["XMP-dc:Description"]
