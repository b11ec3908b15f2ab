import errno
import os
from pathlib import Path

import pytest

from descry.errors import OutputError
from descry.outputs import OutputPlan, atomic_write_text
from descry.schemas import Enrichment, ImageRef, SourceKind
from descry.sources import path_ref


def test_atomic_write_replaces_whole_files_and_leaves_no_temporaries(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "a.txt"
    atomic_write_text(target, "one\n")
    atomic_write_text(target, "two\n")
    assert target.read_text() == "two\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.txt"]


def test_a_folder_that_cannot_be_made_is_an_output_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError):
        atomic_write_text(blocker / "sub" / "a.txt", "caption")


def test_a_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "a.txt"
    target.write_text("old")

    def full(*_args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OutputError) as info:
        atomic_write_text(target, "new")
    assert "disk is full" in info.value.message
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_plan_puts_sidecars_beside_images_or_mirrors_the_tree(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    image = root / "sub" / "x.jpg"
    image.parent.mkdir(parents=True)
    image.write_bytes(b"x")
    ref = path_ref(image)
    assert OutputPlan("txt", None).sidecar_path(ref) == root / "sub" / "x.txt"
    assert OutputPlan("json", tmp_path / "out", [root]).sidecar_path(ref) == tmp_path / "out" / "sub" / "x.json"
    url = ImageRef(kind=SourceKind.url, name="https://h/a/cat.jpg", uri="https://h/a/cat.jpg")
    assert OutputPlan("txt", None).sidecar_path(url) is None
    assert OutputPlan("txt", tmp_path / "o").sidecar_path(url) == tmp_path / "o" / "cat.txt"


def test_jsonl_resume_reads_names_already_written(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    done = Enrichment(name="a.jpg", caption="c", source="m")
    out.write_text(done.model_dump_json() + "\n{broken\n")
    plan = OutputPlan("jsonl", out)
    assert plan.already_done(ImageRef(kind=SourceKind.path, name="a.jpg", uri="a.jpg"))
    assert not plan.already_done(ImageRef(kind=SourceKind.path, name="b.jpg", uri="b.jpg"))
