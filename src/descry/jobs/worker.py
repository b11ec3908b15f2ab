"""The job worker: claim images, enrich them, store the result, deliver it, repeat.

Per image: a cached enrichment (same content hash, model and request) is reused; otherwise
``process`` runs. When sinks are configured the result is saved first, then each sink is
delivered to unless the ledger already holds ``<job_id>:<item_id>:<sink>``, and only then is
the image marked done. A worker that dies anywhere in between loses its lease and another
worker picks the image up where it stopped: the saved result is not computed again and sinks
already in the ledger are not called again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

from sqlalchemy.exc import SQLAlchemyError

from descry.config import JobSettings
from descry.errors import ConfigError, DescryError, describe_error
from descry.jobs.inputs import ItemInput, remove_uploads, sha256_file
from descry.jobs.store import ClaimedItem, JobStore
from descry.schemas import CaptionRequest, Enrichment, ItemError, SourceKind

log = logging.getLogger(__name__)

Process = Callable[[ItemInput, CaptionRequest], Awaitable[Enrichment]]
Deliver = Callable[[Enrichment, ItemInput], Awaitable[None]]
DEFAULT_SINK = "default"
CLEANUP_EVERY = 3600.0
T = TypeVar("T")


@dataclass
class WorkerStats:
    """What one worker did since it started."""

    processed: int = 0
    cached: int = 0
    completed: int = 0
    retried: int = 0
    failed: int = 0
    delivered: int = 0
    lost: int = 0
    released: int = 0


def params_hash(request: CaptionRequest) -> str:
    """A stable hash of the request options that change an enrichment (not asset id or sinks)."""
    body = request.model_dump(mode="json", exclude={"asset_id", "sinks"})
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class _LeaseLost(Exception):
    """This worker no longer holds the image (job cancelled or lease expired and taken)."""


class Worker:
    """Runs job images through ``process`` and ``deliver`` with leases, retries and a result cache.

    ``model`` names the model for the result cache (None disables the cache); ``data_dir``
    lets cleanup delete the uploads of jobs it removes.
    """

    def __init__(
        self,
        store: JobStore,
        process: Process,
        *,
        settings: JobSettings,
        deliver: Deliver | Mapping[str, Deliver] | None = None,
        worker_id: str | None = None,
        model: str | None = None,
        data_dir: Path | None = None,
        default_sinks: Sequence[str] | None = None,
    ) -> None:
        self.store = store
        self.default_sinks = list(default_sinks) if default_sinks is not None else None
        self.process = process
        self.settings = settings
        self.sinks: dict[str, Deliver] = _sinks(deliver)
        self.worker_id = worker_id or default_worker_id()
        self.model = model
        self.data_dir = data_dir
        self.stats = WorkerStats()
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._lost: set[int] = set()
        self._wake = asyncio.Event()

    # -- running ---------------------------------------------------------------------------

    async def run_until_idle(self, job_id: str | None = None) -> WorkerStats:
        """Work until no image (of ``job_id``, or of any job) is queued or leased any more."""
        await self._loop(None, job_id)
        return self.stats

    async def run_forever(self, stop: asyncio.Event) -> WorkerStats:
        """Work until ``stop`` is set, then let in-flight images finish or give them back."""
        await self._loop(stop, None)
        return self.stats

    async def cleanup(self) -> list[str]:
        """Delete finished jobs older than the retention period, with their uploads."""
        removed = await self.store.cleanup(self.settings.retention_days * 86400)
        if self.data_dir is not None:
            for job_id in removed:
                await asyncio.to_thread(remove_uploads, self.data_dir, job_id)
        if removed:
            log.info("removed %d finished jobs older than %s days", len(removed), self.settings.retention_days)
        return removed

    async def _loop(self, stop: asyncio.Event | None, job_id: str | None) -> None:
        heartbeat = asyncio.create_task(self._heartbeat_loop())
        next_cleanup = time.monotonic() if stop is not None else float("inf")
        try:
            while stop is None or not stop.is_set():
                if time.monotonic() >= next_cleanup:
                    await self._safe(self.cleanup())
                    next_cleanup = time.monotonic() + CLEANUP_EVERY
                free = self.settings.concurrency - len(self._tasks)
                want = min(free, self.settings.claim_batch)
                claimed = await self._claim(want, job_id) if want > 0 else []
                for item in claimed:
                    self._start(item)
                if want > 0 and len(claimed) == want:
                    continue
                if not self._tasks and stop is None and await self._safe(self.store.pending(job_id)) == 0:
                    return
                await self._idle(stop)
        finally:
            await self._drain()
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    async def _claim(self, n: int, job_id: str | None) -> list[ClaimedItem]:
        claimed = await self._safe(
            self.store.claim(
                self.worker_id,
                n,
                self.settings.lease_seconds,
                job_id=job_id,
                max_attempts=self.settings.max_attempts,
            )
        )
        return claimed or []

    async def _idle(self, stop: asyncio.Event | None) -> None:
        """Sleep until a slot frees up, ``stop`` is set, or the poll interval passes."""
        self._wake.clear()
        waiters = [asyncio.create_task(self._wake.wait())]
        if stop is not None:
            waiters.append(asyncio.create_task(stop.wait()))
        try:
            await asyncio.wait(waiters, timeout=self.settings.poll_interval, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    def _start(self, item: ClaimedItem) -> None:
        task = asyncio.create_task(self._handle(item), name=f"descry-item-{item.id}")
        self._tasks[item.id] = task
        task.add_done_callback(partial(self._finished, item.id))

    def _finished(self, item_id: int, _task: object = None) -> None:
        self._tasks.pop(item_id, None)
        self._lost.discard(item_id)
        self._wake.set()

    async def _drain(self) -> None:
        """Let in-flight images finish within ``drain_seconds``; give the rest back to the queue."""
        if not self._tasks:
            return
        pending = set(self._tasks.values())
        _done, pending = await asyncio.wait(pending, timeout=self.settings.drain_seconds)
        if not pending:
            return
        ids = [item_id for item_id, task in self._tasks.items() if task in pending]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        released = await self._safe(self.store.release(self.worker_id, ids))
        self.stats.released += released or 0
        log.info("gave %d unfinished images back to the queue", released or 0)

    async def _heartbeat_loop(self) -> None:
        interval = max(self.settings.lease_seconds / 3, 0.05)
        while True:
            await asyncio.sleep(interval)
            ids = list(self._tasks)
            if not ids:
                continue
            held = await self._safe(self.store.heartbeat(self.worker_id, ids, self.settings.lease_seconds))
            if held is None:
                continue
            for item_id in set(ids) - held:
                task = self._tasks.get(item_id)
                if task is not None and not task.done():
                    log.info("lost the lease on item %s (job cancelled or lease expired); stopping it", item_id)
                    self._lost.add(item_id)
                    task.cancel()

    async def _safe(self, awaitable: Awaitable[T]) -> T | None:
        """Await a store call; a database hiccup is logged and retried on the next round."""
        try:
            return await awaitable
        except (DescryError, OSError, SQLAlchemyError) as exc:
            log.warning("job store call failed, will retry: %s", exc)
        return None

    # -- one image -------------------------------------------------------------------------

    async def _handle(self, item: ClaimedItem) -> None:
        try:
            await self._work(item)
        except asyncio.CancelledError:
            if item.id in self._lost:
                self.stats.lost += 1
                return
            raise
        except _LeaseLost:
            self.stats.lost += 1
        except DescryError as exc:
            await self._fail(item, *describe_error(exc), exc.retryable, getattr(exc, "retry_after", None))
        except Exception as exc:
            log.exception("unexpected error on %s", item.input.name)
            await self._fail(item, *describe_error(exc), False, None)

    async def _work(self, item: ClaimedItem) -> None:
        sinks = self._sinks_for(item.request)
        if item.result is not None:
            enrichment = Enrichment.model_validate(item.result)
        else:
            enrichment = await self._enrich(item)
            if sinks and not await self.store.save_result(item.id, self.worker_id, _dump(enrichment)):
                raise _LeaseLost
        for name, deliver in sinks.items():
            key = f"{item.job_id}:{item.id}:{name}"
            if await self.store.is_delivered(key):
                continue
            if not await self.store.heartbeat(self.worker_id, [item.id], self.settings.lease_seconds):
                raise _LeaseLost
            await deliver(enrichment, item.input)
            if not await self.store.record_delivery(key, name):
                log.warning("delivery %s was made twice (another worker took over the image)", key)
            self.stats.delivered += 1
        if not await self.store.complete_item(item.id, self.worker_id, _dump(enrichment)):
            raise _LeaseLost
        self.stats.completed += 1

    async def _enrich(self, item: ClaimedItem) -> Enrichment:
        key = await self._cache_key(item)
        if key is not None and (cached := await self.store.cache_get(*key)) is not None:
            self.stats.cached += 1
            asset_id = item.input.asset_id or item.request.asset_id
            return Enrichment.model_validate(cached).model_copy(update={"name": item.input.name, "asset_id": asset_id})
        enrichment = await self.process(item.input, item.request)
        self.stats.processed += 1
        if key is not None:
            await self.store.cache_put(*key, _dump(enrichment))
        return enrichment

    async def _cache_key(self, item: ClaimedItem) -> tuple[str, str, str] | None:
        if self.model is None:
            return None
        content_hash = item.input.content_hash
        if content_hash is None and item.input.kind is SourceKind.path:
            try:
                content_hash = await asyncio.to_thread(sha256_file, Path(item.input.uri))
            except OSError:
                return None
        if content_hash is None:
            return None
        return content_hash, self.model, params_hash(item.request)

    def _sinks_for(self, request: CaptionRequest) -> dict[str, Deliver]:
        if request.sinks is not None and not request.sinks:
            return {}
        if request.sinks is None and self.default_sinks is not None:
            return {name: self.sinks[name] for name in self.default_sinks if name in self.sinks}
        if request.sinks is None or set(self.sinks) <= {DEFAULT_SINK}:
            return self.sinks
        unknown = [name for name in request.sinks if name not in self.sinks]
        if unknown:
            raise ConfigError(
                f"unknown sink(s) {', '.join(unknown)}",
                hint=f"configured sinks: {', '.join(sorted(self.sinks)) or 'none'}",
            )
        return {name: self.sinks[name] for name in request.sinks}

    async def _fail(
        self, item: ClaimedItem, code: str, message: str, retryable: bool, retry_after: float | None
    ) -> None:
        retry_in = None
        if retryable and item.attempts < self.settings.max_attempts:
            retry_in = max(self.backoff(item.attempts), retry_after or 0.0)
        error = ItemError(name=item.input.name, code=code, message=message)
        state = await self._safe(self.store.fail_item(item.id, self.worker_id, error, retry_in=retry_in))
        if state is None:
            return
        if retry_in is None:
            self.stats.failed += 1
            log.warning("%s failed: %s", item.input.name, message)
        else:
            self.stats.retried += 1
            log.info("%s will be retried in %.1fs: %s", item.input.name, retry_in, message)

    def backoff(self, attempts: int) -> float:
        """Delay before the next try: doubling from ``backoff_base`` up to ``backoff_max``, with jitter."""
        ceiling = min(self.settings.backoff_max, self.settings.backoff_base * 2 ** max(attempts - 1, 0))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


def _sinks(deliver: Deliver | Mapping[str, Deliver] | None) -> dict[str, Deliver]:
    if deliver is None:
        return {}
    if isinstance(deliver, Mapping):
        return dict(deliver)
    return {DEFAULT_SINK: deliver}


def _dump(enrichment: Enrichment) -> dict[str, object]:
    return enrichment.model_dump(mode="json")


__all__ = ["Deliver", "Process", "Worker", "WorkerStats", "params_hash"]
