"""The sidecar sink and the jsonl sink: atomic files, clear errors, whole lines under concurrency."""

from __future__ import annotations

import asyncio
import errno
import json
import os
from pathlib import Path

import pytest

from descry import schemas
from descry.errors import OutputError
from descry.sinks.jsonl import JsonlSink
from descry.sinks.sidecar import SidecarSink


def _enrichment(caption: str = "A red kite over a green field.", **kw: object) -> schemas.Enrichment:
    tags = [schemas.Tag(name="kite", source="keyword")]
    return schemas.Enrichment(name="photo.jpg", caption=caption, tags=tags, source="blip", **kw)  # type: ignore[arg-type]


def _path_ref(path: Path) -> schemas.ImageRef:
    return schemas.ImageRef(kind=schemas.SourceKind.path, name=path.name, uri=str(path))


def _fail_writes_in(directory: Path, monkeypatch: pytest.MonkeyPatch, err: int) -> None:
    """Make os.write fail with ``err`` after half the bytes, for files inside ``directory``."""
    real_write = os.write

    def write(fd: int, data: bytes | memoryview) -> int:
        if os.readlink(f"/proc/self/fd/{fd}").startswith(str(directory)):
            real_write(fd, bytes(data)[: max(1, len(data) // 2)])
            raise OSError(err, os.strerror(err))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)


def _no_temp_files(directory: Path) -> bool:
    return not [p for p in directory.iterdir() if p.name.endswith(".tmp")]


async def test_txt_sidecar_is_the_bare_caption(tmp_path: Path) -> None:
    image = tmp_path / "photo.jpg"
    await SidecarSink("txt").deliver(_enrichment(), _path_ref(image))
    assert (tmp_path / "photo.txt").read_bytes() == b"A red kite over a green field.\n"


async def test_json_sidecar_is_the_whole_enrichment(tmp_path: Path) -> None:
    enrichment = _enrichment(asset_id="a-1", reasoning_trace=["ok"])
    await SidecarSink("json").deliver(enrichment, _path_ref(tmp_path / "photo.jpg"))
    data = json.loads((tmp_path / "photo.json").read_text())
    assert schemas.Enrichment.model_validate(data) == enrichment


async def test_sidecar_replaces_atomically_and_keeps_the_mode(tmp_path: Path) -> None:
    target = tmp_path / "photo.txt"
    target.write_text("old caption")
    target.chmod(0o640)
    await SidecarSink("txt", policy="overwrite").deliver(_enrichment("new caption"), _path_ref(tmp_path / "photo.jpg"))
    assert target.read_text() == "new caption\n"
    assert target.stat().st_mode & 0o777 == 0o640
    assert _no_temp_files(tmp_path)


async def test_output_dir_for_uploads_and_nested_names(tmp_path: Path) -> None:
    out = tmp_path / "out"
    sink = SidecarSink("txt", output_dir=out)
    await sink.deliver(_enrichment(), schemas.ImageRef(kind=schemas.SourceKind.upload, name="a/b/pic.webp"))
    assert (out / "a" / "b" / "pic.txt").read_text() == "A red kite over a green field.\n"
    with pytest.raises(OutputError, match=r"'\.\.'"):
        escape = schemas.ImageRef(kind=schemas.SourceKind.upload, name="../escape.png")
        await sink.deliver(_enrichment(), escape)


async def test_upload_without_output_dir_says_what_to_set() -> None:
    ref = schemas.ImageRef(kind=schemas.SourceKind.url, name="pic.png", uri="https://example.com/pic.png")
    with pytest.raises(OutputError, match="DESCRY_SINKS__SIDECAR__OUTPUT_DIR"):
        await SidecarSink("txt").deliver(_enrichment(), ref)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
async def test_read_only_directory_by_permissions(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(OutputError, match="read-only"):
            await SidecarSink("txt").deliver(_enrichment(), _path_ref(locked / "photo.jpg"))
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o755)


async def test_read_only_directory_is_an_output_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = os.open

    def deny(path: str | os.PathLike[str], flags: int, *args: int, **kw: object) -> int:
        if str(path).startswith(str(tmp_path)) and flags & os.O_CREAT:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", deny)
    with pytest.raises(OutputError) as info:
        await SidecarSink("json").deliver(_enrichment(), _path_ref(tmp_path / "photo.jpg"))
    assert "read-only" in str(info.value) and "output_dir" in str(info.value)
    assert info.value.code == "output_error"
    assert list(tmp_path.iterdir()) == []


async def test_disk_full_leaves_nothing_partial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "photo.txt"
    target.write_text("previous caption")
    _fail_writes_in(tmp_path, monkeypatch, errno.ENOSPC)
    with pytest.raises(OutputError, match="disk is full"):
        sink = SidecarSink("txt", policy="overwrite")  # the file there is not descry's
        await sink.deliver(_enrichment("x" * 10_000), _path_ref(tmp_path / "photo.jpg"))
    assert target.read_text() == "previous caption"
    assert _no_temp_files(tmp_path)


async def test_jsonl_many_concurrent_writers_give_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "out.jsonl"
    writers = [JsonlSink(path), JsonlSink(path)]  # two objects: only the file lock keeps them apart
    long_caption = "word " * 2000
    jobs = [
        writers[i % 2].deliver(
            _enrichment(f"{i} {long_caption}"),
            schemas.ImageRef(kind=schemas.SourceKind.path, name=f"img{i}.jpg", uri=f"/data/img{i}.jpg"),
        )
        for i in range(200)
    ]
    await asyncio.gather(*jobs)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 200
    records = [json.loads(line) for line in lines]
    assert sorted(int(r["caption"].split()[0]) for r in records) == list(range(200))
    assert all(r["name"] == "photo.jpg" and r["source"] == "blip" for r in records)


async def test_jsonl_disk_full_leaves_no_half_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "out.jsonl"
    sink = JsonlSink(path)
    ref = _path_ref(tmp_path / "a.jpg")
    await sink.deliver(_enrichment("first"), ref)
    with monkeypatch.context() as patch:
        _fail_writes_in(tmp_path, patch, errno.ENOSPC)
        with pytest.raises(OutputError, match="disk is full"):
            await sink.deliver(_enrichment("second " * 500), ref)
    await sink.deliver(_enrichment("third"), ref)
    captions = [json.loads(line)["caption"] for line in path.read_text().splitlines()]
    assert captions == ["first", "third"]
