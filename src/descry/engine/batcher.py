"""Dynamic micro-batching with overlapped stages.

Items submitted close together are grouped (by task and generation parameters) into one
device batch of at most ``max_batch_size``, waiting at most ``max_wait_s`` for it to fill.
Each batch runs preprocess on a CPU thread pool, forward on the single device thread and
postprocess on the CPU pool again, so the next batch is prepared while one runs. Every
submitted future is settled: a failing batch is split until the bad item fails alone, and
an out-of-memory halves the batch size (growing back after a run of good batches).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from descry.backends.base import Backend, Generation, Prompted, stamp
from descry.errors import DescryError, ModelError, ModelNotReady, OutOfMemory, Overloaded, RemoteModelError

GROW_AFTER = 8
ADAPTIVE_WAIT_CAP_S = 1.0


@dataclass
class _Pending:
    item: Prompted
    future: asyncio.Future[Generation]
    key: Hashable
    enqueued: float = field(default_factory=time.perf_counter)


@dataclass
class BatcherStats:
    batches: int = 0
    items: int = 0
    failures: int = 0
    oom_splits: int = 0
    batch_sizes: list[int] = field(default_factory=list)


def batch_key(backend: Backend, item: Prompted) -> Hashable:
    """Items that may share a device batch: same task, parameters, options and input shape."""
    options = tuple(sorted((k, repr(v)) for k, v in item.options.items()))
    return item.task, item.params, options, backend.shape_key(item)


class DynamicBatcher:
    """Groups concurrent single-image requests into device batches."""

    def __init__(
        self,
        backend: Backend,
        *,
        max_batch_size: int,
        max_wait_s: float,
        max_queue: int,
        inflight_batches: int = 2,
        adaptive_wait: float = 0.0,
        cpu_threads: int = 2,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self.backend = backend
        self.max_batch_size = max_batch_size
        self.current_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.adaptive_wait = adaptive_wait
        self._last_device_s = 0.0
        self.max_queue = max_queue
        self.stats = BatcherStats()
        self._on_batch = on_batch
        self._pending: list[_Pending] = []
        self._wakeup = asyncio.Event()
        self._inflight = asyncio.Semaphore(inflight_batches)
        self._device_lock = asyncio.Lock()
        self._cpu = ThreadPoolExecutor(cpu_threads, thread_name_prefix="descry-cpu")
        self._device = ThreadPoolExecutor(1, thread_name_prefix="descry-device")
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._good_streak = 0
        self._busy = 0
        self._closed = False

    @property
    def queue_depth(self) -> int:
        return len(self._pending)

    async def start(self) -> None:
        self._loop_task = asyncio.create_task(self._run(), name="descry-batcher")

    async def stop(self) -> None:
        """Stop taking work, finish batches in flight and fail what never started."""
        self._closed = True
        if self._loop_task:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for pending in self._pending:
            if not pending.future.done():
                pending.future.set_exception(ModelNotReady("the server is shutting down", hint="retry shortly"))
        self._pending.clear()
        self._cpu.shutdown(wait=False)
        self._device.shutdown(wait=False)

    async def submit(self, item: Prompted) -> Generation:
        """Queue one item; resolves to its generation or raises its own error."""
        if self._closed:
            raise ModelNotReady("the engine is stopped", hint="retry shortly")
        if len(self._pending) >= self.max_queue:
            raise Overloaded(
                f"{len(self._pending)} images are already waiting for the model",
                retry_after=max(1.0, self.max_wait_s * 10),
                hint="retry after a short wait, or raise DESCRY_BATCHING__MAX_QUEUE",
            )
        self.backend.check(item)
        future: asyncio.Future[Generation] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(item, future, batch_key(self.backend, item)))
        self._wakeup.set()
        return await future

    async def _run(self) -> None:
        while True:
            if not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
            await self._inflight.acquire()
            await self._fill()
            batch = self._take()
            if not batch:
                self._inflight.release()
                continue
            self._busy += 1
            task = asyncio.create_task(self._execute_and_release(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _fill(self) -> None:
        """Wait until a full batch of the oldest item's kind is pending, or max_wait has passed while
        the device is idle: while it is busy a partial batch keeps filling, since it could not run yet."""
        if not self._pending:
            return
        deadline = self._pending[0].enqueued + self.wait_s
        while True:
            key = self._pending[0].key
            if sum(1 for p in self._pending if p.key == key) >= self.current_batch_size:
                return
            remaining = deadline - time.perf_counter()
            if remaining <= 0 and self._busy == 0:
                return
            self._wakeup.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), remaining if remaining > 0 else None)

    @property
    def wait_s(self) -> float:
        """How long a partial batch may wait: max_wait, or a share of the last batch's device time.

        Clients that resubmit when their answers arrive come back spread over a few decode times;
        on a device whose batches take seconds, waiting a few percent of that fills the next batch.
        """
        return max(self.max_wait_s, min(ADAPTIVE_WAIT_CAP_S, self.adaptive_wait * self._last_device_s))

    def _device_done(self, released: list[bool]) -> None:
        """A dispatched batch no longer needs the device: partial batches may go."""
        if released[0]:
            return
        released[0] = True
        self._busy -= 1
        if self._busy == 0:
            self._wakeup.set()

    def _take(self) -> list[_Pending]:
        live = [p for p in self._pending if not p.future.done()]
        if not live:
            self._pending.clear()
            return []
        key = live[0].key
        batch = [p for p in live if p.key == key][: self.current_batch_size]
        taken = {id(p) for p in batch}
        self._pending = [p for p in live if id(p) not in taken]
        return batch

    async def _execute_and_release(self, batch: list[_Pending]) -> None:
        released = [False]
        try:
            await self._execute(batch, released)
        finally:
            self._device_done(released)
            self._inflight.release()

    async def _execute(self, batch: list[_Pending], released: list[bool] | None = None) -> None:
        items = [p.item for p in batch]
        loop = asyncio.get_running_loop()
        t0 = time.perf_counter()
        try:
            prepared = await loop.run_in_executor(self._cpu, self.backend.preprocess, items)
            t1 = time.perf_counter()
            async with self._device_lock:
                t2 = time.perf_counter()
                raw = await loop.run_in_executor(self._device, self.backend.forward, prepared)
                t3 = time.perf_counter()
            if released is not None:
                self._device_done(released)
            gens = await loop.run_in_executor(self._cpu, self.backend.postprocess, prepared, raw)
            t4 = time.perf_counter()
            stamp(
                gens,
                len(items),
                self.backend.name,
                preprocess_s=t1 - t0,
                queue_s=t2 - t1,
                generate_s=t3 - t2,
                postprocess_s=t4 - t3,
            )
        except OutOfMemory as exc:
            await self._after_oom(batch, exc)
            return
        except Exception as exc:
            await self._after_failure(batch, exc)
            return
        self._record(len(batch), t3 - t2)
        for pending, gen in zip(batch, gens, strict=True):
            wait = t0 - pending.enqueued
            gen.timings["wait_s"] = wait
            self._settle(pending, gen)

    def _settle(self, pending: _Pending, gen: Generation) -> None:
        if pending.future.done():
            return
        if gen.finish_reason == "error":
            error = (gen.structured or {}).get("error", {})
            pending.future.set_exception(
                RemoteModelError(str(error.get("message", "the model server failed this image")))
            )
            self.stats.failures += 1
        else:
            pending.future.set_result(gen)

    def _record(self, size: int, device_s: float) -> None:
        self._last_device_s = device_s
        self.stats.batches += 1
        self.stats.items += size
        self.stats.batch_sizes.append(size)
        del self.stats.batch_sizes[:-1000]
        if self._on_batch:
            self._on_batch(size, device_s)
        self._good_streak += 1
        if self.current_batch_size < self.max_batch_size and self._good_streak >= GROW_AFTER:
            self.current_batch_size = min(self.max_batch_size, self.current_batch_size * 2)
            self._good_streak = 0

    async def _after_oom(self, batch: list[_Pending], exc: OutOfMemory) -> None:
        self._good_streak = 0
        self.stats.oom_splits += 1
        if len(batch) == 1:
            self._fail(batch, exc)
            return
        half = max(1, len(batch) // 2)
        self.current_batch_size = max(1, min(self.current_batch_size, half))
        await self._execute(batch[:half])
        await self._execute(batch[half:])

    async def _after_failure(self, batch: list[_Pending], exc: Exception) -> None:
        """Split a failed batch until each bad item fails alone."""
        if len(batch) == 1:
            self._fail(batch, exc)
            return
        half = len(batch) // 2
        await self._execute(batch[:half])
        await self._execute(batch[half:])

    def _fail(self, batch: list[_Pending], exc: Exception) -> None:
        error = exc if isinstance(exc, DescryError) else ModelError(f"the model failed on this image ({exc!r})")
        error.__cause__ = None if error is exc else exc
        for pending in batch:
            if not pending.future.done():
                pending.future.set_exception(error)
                self.stats.failures += 1
