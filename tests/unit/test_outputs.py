import errno
import os
from pathlib import Path

import pytest

from descry.errors import OutputError
from descry.fileio import atomic_write
from descry.schemas import Enrichment, ImageRef, SourceKind
from descry.sinks.jsonl import JsonlSink
from descry.sinks.sidecar import SidecarSink
from descry.sources import path_ref


def test_atomic_write_replaces_whole_files_and_leaves_no_temporaries(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "a.txt"
    atomic_write(target, b"one\n")
    atomic_write(target, b"two\n")
    assert target.read_text() == "two\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.txt"]


def test_a_folder_that_cannot_be_made_is_an_output_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError):
        atomic_write(blocker / "sub" / "a.txt", b"caption")


def test_a_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "a.txt"
    target.write_text("old")

    def full(*_args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OutputError) as info:
        atomic_write(target, b"new")
    assert "disk is full" in info.value.message
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_sidecars_go_beside_images_or_mirror_the_tree(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    image = root / "sub" / "x.jpg"
    image.parent.mkdir(parents=True)
    image.write_bytes(b"x")
    ref = path_ref(image)
    assert SidecarSink("txt").target(ref) == root / "sub" / "x.txt"
    assert SidecarSink("json", tmp_path / "out", [root]).target(ref) == tmp_path / "out" / "sub" / "x.json"
    url = ImageRef(kind=SourceKind.url, name="https://h/a/cat.jpg", uri="https://h/a/cat.jpg")
    assert SidecarSink("txt", tmp_path / "o").target(url) == tmp_path / "o" / "cat.txt"


def test_jsonl_resume_reads_names_already_written(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    done = Enrichment(name="a.jpg", caption="c", source="m")
    out.write_text(done.model_dump_json() + "\n{broken\n")
    sink = JsonlSink(out)
    assert sink.done(ImageRef(kind=SourceKind.path, name="a.jpg", uri="a.jpg"))
    assert not sink.done(ImageRef(kind=SourceKind.path, name="b.jpg", uri="b.jpg"))
