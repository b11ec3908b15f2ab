"""Same-stem images delivered one by one (the API and jobs plan no names): no sidecar holds two results."""

from __future__ import annotations

import json
from pathlib import Path

from descry import schemas
from descry.sinks.sidecar import SidecarSink


def _deliver(sink: SidecarSink, image: Path, caption: str) -> None:
    ref = schemas.ImageRef(kind=schemas.SourceKind.path, name=str(image), uri=str(image))
    sink.write(schemas.Enrichment(name=str(image), caption=caption, source="m"), ref)


def _owner(path: Path) -> str:
    return Path(json.loads(path.read_text())["name"]).name


def test_a_json_sidecar_of_another_image_is_never_replaced(tmp_path: Path) -> None:
    sink = SidecarSink("json")
    _deliver(sink, tmp_path / "photo.jpg", "first")
    _deliver(sink, tmp_path / "photo.png", "second")
    assert _owner(tmp_path / "photo.json") == "photo.jpg"
    assert _owner(tmp_path / "photo.png.json") == "photo.png"
    _deliver(sink, tmp_path / "photo.jpg", "third")  # descry's own sidecar of the same image is replaced
    assert json.loads((tmp_path / "photo.json").read_text())["caption"] == "third"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.json", "photo.png.json"]


def test_a_run_s_planned_names_still_win(tmp_path: Path) -> None:
    sink = SidecarSink("json")
    images = [tmp_path / "photo.jpg", tmp_path / "photo.png"]
    refs = [schemas.ImageRef(kind=schemas.SourceKind.path, name=str(p), uri=str(p)) for p in images]
    sink.prepare(refs)
    _deliver(sink, images[1], "png")
    _deliver(sink, images[0], "jpg")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.jpg.json", "photo.png.json"]
