"""The ``jsonl`` sink: one JSON line per image appended to a file, safe under concurrency."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import threading
from pathlib import Path

from descry import schemas
from descry.fileio import output_error, write_all


def jsonl_record(enrichment: schemas.Enrichment, ref: schemas.ImageRef) -> dict[str, object]:
    """What one line holds: the enrichment plus where the image came from."""
    return {"uri": ref.uri, "kind": ref.kind.value, **enrichment.model_dump(mode="json")}


class JsonlSink:
    """Appends whole lines only: a thread lock and an flock around one O_APPEND write per line.

    A failed write (disk full) is truncated away, so the file never ends in half a line.
    """

    name = "jsonl"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    async def deliver(self, enrichment: schemas.Enrichment, ref: schemas.ImageRef) -> None:
        line = json.dumps(jsonl_record(enrichment, ref), ensure_ascii=False, separators=(",", ":")) + "\n"
        await asyncio.to_thread(self._append, line.encode("utf-8"))

    def _append(self, data: bytes) -> None:
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
