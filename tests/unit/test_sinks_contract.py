"""The sink contract: one renderer, one location rule, done() for resume, entry points, the one rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from descry import schemas
from descry.config import Settings
from descry.errors import InputError, OutputError
from descry.sinks import registry
from descry.sinks.files import image_location, render_line, render_sidecar
from descry.sinks.jsonl import JsonlSink
from descry.sinks.log import LogSink
from descry.sinks.pool import SinkPool, choose_sinks, configured_defaults
from descry.sinks.sidecar import SidecarSink


def _enrichment(name: str = "x.jpg", caption: str = "  a kite  ") -> schemas.Enrichment:
    return schemas.Enrichment(name=name, caption=caption, source="m")


def _path_ref(path: Path) -> schemas.ImageRef:
    return schemas.ImageRef(kind=schemas.SourceKind.path, name=str(path), uri=str(path))


def test_rendering_is_one_set_of_bytes() -> None:
    enrichment = _enrichment()
    assert render_sidecar(enrichment, "txt") == b"a kite\n"
    doc = render_sidecar(enrichment, "json")
    assert doc.endswith(b"}\n") and b"\n  " in doc and b"null" not in doc
    line = render_line(enrichment)
    assert line.count(b"\n") == 1 and line.endswith(b"\n") and b"null" not in line
    assert json.loads(line) == json.loads(doc)


def test_location_mirrors_the_tree_below_a_root(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    image = root / "sub" / "x.jpg"
    out = tmp_path / "out"
    assert image_location(_path_ref(image), None, "sidecar") == image
    assert image_location(_path_ref(image), out, "sidecar", [root]) == out / "sub" / "x.jpg"
    assert image_location(_path_ref(image), out, "sidecar") == out / "x.jpg"
    url = schemas.ImageRef(kind=schemas.SourceKind.url, name="https://h/a/cat.jpg", uri="https://h/a/cat.jpg")
    assert image_location(url, out, "sidecar") == out / "cat.jpg"
    with pytest.raises(OutputError):
        image_location(url, None, "sidecar")


def test_sidecar_done_is_the_file_existing(tmp_path: Path) -> None:
    ref = _path_ref(tmp_path / "x.jpg")
    sink = SidecarSink("json")
    assert not sink.done(ref)
    sink.write(_enrichment(), ref)
    assert sink.done(ref) and (tmp_path / "x.json").is_file()
    url = schemas.ImageRef(kind=schemas.SourceKind.url, name="https://h/c.jpg", uri="https://h/c.jpg")
    assert not sink.done(url)


def test_jsonl_done_is_the_name_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text(render_line(_enrichment("a.jpg")).decode() + '{"name": "half')
    sink = JsonlSink(path)
    ref = lambda name: schemas.ImageRef(kind=schemas.SourceKind.path, name=name, uri=name)  # noqa: E731
    assert sink.done(ref("a.jpg")) and not sink.done(ref("b.jpg"))
    sink.write(_enrichment("b.jpg"), ref("b.jpg"))
    assert sink.done(ref("b.jpg"))
    assert not LogSink().done(ref("a.jpg"))


def test_jsonl_to_a_stream_writes_the_same_line(tmp_path: Path) -> None:
    import io

    stream = io.StringIO()
    ref = _path_ref(tmp_path / "a.jpg")
    JsonlSink(stream=stream).write(_enrichment("a.jpg"), ref)
    JsonlSink(tmp_path / "f.jsonl").write(_enrichment("a.jpg"), ref)
    assert stream.getvalue().encode() == (tmp_path / "f.jsonl").read_bytes()


def test_builtins_come_from_entry_points_loaded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib.metadata import entry_points

    names = {ep.name for ep in entry_points(group=registry.ENTRY_POINT_GROUP)}
    assert {"log", "webhook", "sidecar", "xmp", "jsonl"} <= names
    registry.sink_factories.cache_clear()
    calls = []
    real = registry.entry_points

    def counting(**kw: object) -> object:
        calls.append(kw)
        return real(**kw)  # type: ignore[arg-type]

    monkeypatch.setattr(registry, "entry_points", counting)
    try:
        registry.known_sinks()
        registry.known_sinks()
        registry.build_sinks(["log"], Settings())
        assert len(calls) == 1
    finally:
        registry.sink_factories.cache_clear()


def test_the_one_rule() -> None:
    assert choose_sinks(["Log", "jsonl", "log"], ["xmp"]) == ["log", "jsonl"]
    assert choose_sinks([], ["xmp"], asset_id="a") == []
    assert choose_sinks(None, ["xmp"]) == ["xmp"]
    assert choose_sinks(None, ["xmp"], in_reply=True) == []
    assert choose_sinks(None, ["xmp"], in_reply=True, asset_id="a") == ["xmp"]


def test_configured_defaults_win_over_the_face_default() -> None:
    assert configured_defaults(Settings(), ["sidecar"]) == ["sidecar"]
    assert configured_defaults(Settings(sinks={"default": ["xmp"]}), ["sidecar"]) == ["xmp"]
    assert configured_defaults(Settings(sinks={"default": []}), ["sidecar"]) == []


async def test_pool_refuses_unknown_names_and_resumes_from_instances(tmp_path: Path) -> None:
    pool = SinkPool(Settings(data_dir=tmp_path), {"sidecar": SidecarSink("txt")}, face_default=["sidecar"])
    with pytest.raises(InputError):
        pool.names_for(["log", "carrier-pigeon"])
    names = pool.names_for(None, in_reply=False)
    assert names == ["sidecar"]
    ref = _path_ref(tmp_path / "x.jpg")
    assert not await pool.done(names, ref)
    assert await pool.deliver(names, _enrichment(), ref) == {"sidecar": None}
    assert await pool.done(names, ref)
    assert not await pool.done(["sidecar", "log"], ref)
    assert not await pool.done([], ref)
    await pool.close()
