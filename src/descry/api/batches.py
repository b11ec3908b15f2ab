"""Asynchronous batches behind ``/async-batch-caption``: a small protocol and an in-process implementation.

The in-process manager saves the uploads to ``<data_dir>/uploads/<id>/`` before answering, keeps
each batch's status and results as JSON in ``<data_dir>/batches/<id>.json`` (so any process and
any restart can answer status), and resumes unfinished batches at start-up. A file lock per batch
keeps two server processes from working on the same batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, Protocol

from descry.api.models import AsyncBatchStatus, BatchProgress, ErrorDetail, SeedBatchItem, SeedBatchResponse
from descry.api.service import Captioned, CaptionService
from descry.schemas import CaptionRequest, ImageRef, ItemError
from descry.sources import upload_ref

log = logging.getLogger("descry.api.batches")

_ID = re.compile(r"^[0-9a-f]{32}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
UNFINISHED = ("pending", "processing")
SAVE_EVERY_S = 0.5
MODEL_POLL_S = 0.1


class BatchManager(Protocol):
    """Accepts a batch of uploaded images and reports its progress and results."""

    async def start(self) -> None: ...

    async def submit(self, files: list[ImageRef], request: CaptionRequest) -> str:
        """Store the images durably and queue the batch; returns its id."""
        ...

    async def status(self, batch_id: str) -> AsyncBatchStatus | None:
        """The batch's state, or None when the id is unknown."""
        ...

    async def close(self) -> None: ...


def seed_item(name: str, outcome: Captioned | ItemError) -> SeedBatchItem:
    """One result in the seeds' batch shape: image_path, caption and tag names (or an error)."""
    if isinstance(outcome, ItemError):
        return SeedBatchItem(image_path=name, error=ErrorDetail(code=outcome.code, message=outcome.message))
    enrichment = outcome.enrichment
    return SeedBatchItem(image_path=name, caption=enrichment.caption, tags=[t.name for t in enrichment.tags])


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class LocalBatches:
    """Batches run as tasks in this process, with their state in JSON files under the data dir."""

    def __init__(self, service: CaptionService, data_dir: Path) -> None:
        self.service = service
        self.uploads = Path(data_dir) / "uploads"
        self.records = Path(data_dir) / "batches"
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._live: dict[str, dict[str, Any]] = {}

    async def start(self) -> None:
        """Create the folders and resume batches a previous run did not finish."""
        await asyncio.to_thread(self._mkdirs)
        for record in await asyncio.to_thread(self._unfinished):
            self._launch(record)

    def _mkdirs(self) -> None:
        self.uploads.mkdir(parents=True, exist_ok=True)
        self.records.mkdir(parents=True, exist_ok=True)

    def _unfinished(self) -> list[dict[str, Any]]:
        found = []
        for path in sorted(self.records.glob("*.json")):
            with contextlib.suppress(OSError, ValueError):
                record = json.loads(path.read_text(encoding="utf-8"))
                if record.get("status") in UNFINISHED:
                    found.append(record)
        return found

    async def submit(self, files: list[ImageRef], request: CaptionRequest) -> str:
        batch_id = uuid.uuid4().hex
        record = await asyncio.to_thread(self._store, batch_id, files, request)
        self._launch(record)
        return batch_id

    def _store(self, batch_id: str, files: list[ImageRef], request: CaptionRequest) -> dict[str, Any]:
        folder = self.uploads / batch_id
        folder.mkdir(parents=True)
        stored = []
        for index, ref in enumerate(files):
            safe = _UNSAFE.sub("_", Path(ref.name).name)[-100:] or "image"
            filename = f"{index:05d}_{safe}"
            (folder / filename).write_bytes(ref.data or b"")
            stored.append({"name": ref.name, "file": filename})
        now = time.time()
        record = {
            "task_id": batch_id,
            "status": "pending",
            "message": f"Queued {len(files)} images",
            "request": request.model_dump(mode="json"),
            "files": stored,
            "items": [None] * len(files),
            "created_at": now,
            "updated_at": now,
            "seconds": 0.0,
        }
        self._save(record)
        return record

    def _save(self, record: dict[str, Any]) -> None:
        record["updated_at"] = time.time()
        _atomic_write(self.records / f"{record['task_id']}.json", json.dumps(record))

    def _launch(self, record: dict[str, Any]) -> None:
        batch_id = record["task_id"]
        if batch_id in self._tasks:
            return
        self._live[batch_id] = record
        task = asyncio.create_task(self._run(record), name=f"descry-batch-{batch_id}")
        self._tasks[batch_id] = task
        task.add_done_callback(lambda _t: self._forget(batch_id))

    def _forget(self, batch_id: str) -> None:
        self._tasks.pop(batch_id, None)
        self._live.pop(batch_id, None)

    async def _run(self, record: dict[str, Any]) -> None:
        folder = self.uploads / record["task_id"]
        if not await asyncio.to_thread(folder.is_dir):
            record.update(
                status="failed", message="the saved uploads of this batch are gone; submit the images again"
            )
            await asyncio.to_thread(self._save, record)
            return
        lock = await asyncio.to_thread(_try_lock, folder)
        if lock is None:
            return  # another server process is working on it
        try:
            if not await self._model_up():
                log.warning(
                    "batch %s waits: the model is not loaded; it resumes at the next start", record["task_id"]
                )
                return
            await self._process(record, folder)
        except asyncio.CancelledError:
            await asyncio.to_thread(self._save, record)
            raise
        except Exception as exc:
            log.exception("batch %s crashed", record["task_id"])
            record.update(
                status="failed", message=f"the batch stopped on an unexpected error: {type(exc).__name__}"
            )
            await asyncio.to_thread(self._save, record)
        finally:
            os.close(lock)

    async def _model_up(self) -> bool:
        """Wait while the model loads; False when it failed to load (the batch then stays queued)."""
        while (state := self.service.enricher.engine.state).status in ("stopped", "loading"):
            await asyncio.sleep(MODEL_POLL_S)
        return state.status == "ready"

    async def _process(self, record: dict[str, Any], folder: Path) -> None:
        request = CaptionRequest.model_validate(record["request"])
        todo = [i for i, item in enumerate(record["items"]) if item is None]
        total = len(record["items"])
        record.update(status="processing", message=self._progress_message(record))
        await asyncio.to_thread(self._save, record)
        started = time.perf_counter() - float(record.get("seconds", 0.0))
        last_save = time.perf_counter()
        limit = asyncio.Semaphore(self.service.concurrency)

        async def one(index: int) -> None:
            nonlocal last_save
            entry = record["files"][index]
            async with limit:
                outcome = await self._caption_stored(folder / entry["file"], entry["name"], request)
            record["items"][index] = seed_item(entry["name"], outcome).model_dump(mode="json")
            record["seconds"] = time.perf_counter() - started
            record["message"] = self._progress_message(record)
            if time.perf_counter() - last_save >= SAVE_EVERY_S:
                last_save = time.perf_counter()
                await asyncio.to_thread(self._save, record)

        await asyncio.gather(*(one(i) for i in todo))
        failed = sum(1 for item in record["items"] if item and item.get("error"))
        record["seconds"] = time.perf_counter() - started
        if total and failed == total:
            record.update(status="failed", message=f"All {total} images failed")
        else:
            suffix = f" ({failed} failed)" if failed else ""
            record.update(status="completed", message=f"Processed {total}/{total} images{suffix}")
        await asyncio.to_thread(self._save, record)
        await asyncio.to_thread(shutil.rmtree, folder, True)

    async def _caption_stored(self, path: Path, name: str, request: CaptionRequest) -> Captioned | ItemError:
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except OSError as exc:
            return ItemError(
                name=name, code="not_found", message=f"the saved upload is missing ({exc.strerror})"
            )
        return await self.service.caption_or_error(upload_ref(name, data), request, retry_overloaded=True)

    @staticmethod
    def _progress_message(record: dict[str, Any]) -> str:
        done = sum(1 for item in record["items"] if item is not None)
        return f"Processed {done}/{len(record['items'])} images"

    async def status(self, batch_id: str) -> AsyncBatchStatus | None:
        if not _ID.match(batch_id):
            return None
        record = self._live.get(batch_id)
        if record is None:
            record = await asyncio.to_thread(self._load, batch_id)
        return None if record is None else to_status(record)

    def _load(self, batch_id: str) -> dict[str, Any] | None:
        try:
            loaded: dict[str, Any] = json.loads(
                (self.records / f"{batch_id}.json").read_text(encoding="utf-8")
            )
        except (OSError, ValueError):
            return None
        return loaded

    async def close(self) -> None:
        """Stop working; unfinished batches stay on disk and resume at the next start."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _try_lock(folder: Path) -> int | None:
    """An exclusive, non-blocking lock on the batch's folder (released when the fd closes)."""
    try:
        fd = os.open(folder / ".lock", os.O_CREAT | os.O_RDWR, 0o600)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def to_status(record: dict[str, Any]) -> AsyncBatchStatus:
    items = record["items"]
    done = sum(1 for item in items if item is not None)
    failed = sum(1 for item in items if item and item.get("error"))
    result = None
    if record["status"] in ("completed", "failed") and done == len(items):
        result = SeedBatchResponse(
            results=[SeedBatchItem.model_validate(item) for item in items],
            total_processing_time=round(float(record.get("seconds", 0.0)), 4),
        )
    return AsyncBatchStatus(
        task_id=record["task_id"],
        status=record["status"],
        message=record["message"],
        result=result,
        progress=BatchProgress(total=len(items), done=done, failed=failed),
        created_at=record["created_at"],
        updated_at=record["updated_at"],
    )
