"""The ``jsonl`` sink: one JSON line per image appended to a file (or a stream), safe under concurrency."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from descry.fileio import output_error, write_all
from descry.schemas import Enrichment, ImageRef
from descry.sinks.files import render_line


def jsonl_lines(path: Path) -> Iterator[str]:
    """The complete result lines of a JSONL file; a half-written last line (a crash) is skipped."""
    if not path.is_file():
        return
    with path.open(encoding="utf-8", errors="replace") as handle:
        for raw in handle:
            line = raw.rstrip("\n")
            with contextlib.suppress(ValueError, TypeError, KeyError, AttributeError):
                if raw.endswith("\n") and json.loads(line)["name"]:
                    yield line


def jsonl_names(path: Path) -> Iterator[str]:
    """The image names a JSONL result file already holds."""
    for line in jsonl_lines(path):
        yield json.loads(line)["name"]


class JsonlSink:
    """Appends whole lines only: a thread lock and an flock around one O_APPEND write per line.

    A failed write (disk full) is truncated away, so the file never ends in half a line. With
    ``stream`` (the CLI's stdout) lines go there instead, one flushed write each.
    """

    name = "jsonl"

    def __init__(self, path: Path | None = None, *, stream: IO[str] | None = None) -> None:
        if path is None and stream is None:
            raise ValueError("JsonlSink needs a path or a stream")
        self.path = Path(path) if path is not None else None
        self.stream = stream
        self._lock = threading.Lock()
        self._names: set[str] | None = None

    def write(self, enrichment: Enrichment, ref: ImageRef) -> None:
        """Append the line now (blocking)."""
        line = render_line(enrichment)
        if self.path is None:
            assert self.stream is not None
            with self._lock:
                self.stream.write(line.decode("utf-8"))
                self.stream.flush()
        else:
            self._append(line)
        with self._lock:
            if self._names is not None:
                self._names.add(enrichment.name)

    async def deliver(self, enrichment: Enrichment, ref: ImageRef) -> None:
        await asyncio.to_thread(self.write, enrichment, ref)

    def done(self, ref: ImageRef) -> bool:
        """A complete line for this image's name is already in the file (read once, then kept up to date)."""
        if self.path is None:
            return False
        with self._lock:
            if self._names is None:
                self._names = set(jsonl_names(self.path))
            return ref.name in self._names

    def _append(self, data: bytes) -> None:
        assert self.path is not None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._lock:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                    size = os.fstat(fd).st_size
                    try:
                        write_all(fd, data)
                    except OSError:
                        os.ftruncate(fd, size)
                        raise
                finally:
                    os.close(fd)
        except OSError as exc:
            raise output_error(exc, self.path) from exc

    async def close(self) -> None:
        return None
