import asyncio

import pytest
from PIL import Image

from descry.backends.base import Prompted
from descry.engine.batcher import DynamicBatcher
from descry.errors import CapabilityError, ModelError, OutOfMemory, Overloaded
from descry.schemas import GenerationParams
from tests.fakes.echo_backend import EchoBackend


def item(width: int, **kw: object) -> Prompted:
    return Prompted(image=Image.new("RGB", (width, 10)), **kw)  # type: ignore[arg-type]


async def started(backend: EchoBackend, **kw: object) -> DynamicBatcher:
    options = {"max_batch_size": 8, "max_wait_s": 0.05, "max_queue": 100} | kw
    batcher = DynamicBatcher(backend, **options)  # type: ignore[arg-type]
    await batcher.start()
    return batcher


async def test_concurrent_items_share_batches_and_keep_their_own_results() -> None:
    backend = EchoBackend(delay=0.01)
    batcher = await started(backend)
    gens = await asyncio.gather(*(batcher.submit(item(20 + i)) for i in range(32)))
    await batcher.stop()
    assert [g.text for g in gens] == [f"{20 + i}x10" for i in range(32)]
    assert sum(backend.batches) == 32
    assert len(backend.batches) < 32
    assert max(backend.batches) <= 8
    assert all({"preprocess_s", "generate_s", "postprocess_s", "wait_s"} <= g.timings.keys() for g in gens)


async def test_items_with_different_parameters_never_share_a_batch() -> None:
    backend = EchoBackend()
    batcher = await started(backend)
    short = GenerationParams(max_new_tokens=5)
    long = GenerationParams(max_new_tokens=50)
    gens = await asyncio.gather(*(batcher.submit(item(30 + i, params=short if i % 2 else long)) for i in range(10)))
    await batcher.stop()
    assert [g.text for g in gens] == [f"{30 + i}x10" for i in range(10)]
    assert len(backend.batches) >= 2


async def test_one_bad_item_fails_alone() -> None:
    backend = EchoBackend()
    batcher = await started(backend)
    results = await asyncio.gather(*(batcher.submit(item(w)) for w in (20, 13, 21, 22)), return_exceptions=True)
    await batcher.stop()
    assert isinstance(results[1], ModelError)
    assert [r.text for i, r in enumerate(results) if i != 1] == ["20x10", "21x10", "22x10"]  # type: ignore[union-attr]


async def test_out_of_memory_halves_the_batch_and_every_item_succeeds() -> None:
    backend = EchoBackend(oom_above=2)
    batcher = await started(backend)
    gens = await asyncio.gather(*(batcher.submit(item(40 + i)) for i in range(8)))
    await batcher.stop()
    assert len(gens) == 8
    assert max(backend.batches) <= 2
    assert batcher.current_batch_size <= 2
    assert batcher.stats.oom_splits >= 1


async def test_out_of_memory_on_a_single_image_is_reported() -> None:
    backend = EchoBackend(oom_above=0)
    batcher = await started(backend)
    with pytest.raises(OutOfMemory):
        await batcher.submit(item(40))
    await batcher.stop()


async def test_full_queue_is_refused_with_retry_after() -> None:
    backend = EchoBackend(delay=0.2)
    batcher = await started(backend, max_batch_size=1, max_queue=2, inflight_batches=1)
    tasks = [asyncio.create_task(batcher.submit(item(20 + i))) for i in range(6)]
    results = await asyncio.gather(*tasks, return_exceptions=True)
    await batcher.stop()
    refused = [r for r in results if isinstance(r, Overloaded)]
    assert refused and all(r.retry_after > 0 for r in refused)
    assert any(not isinstance(r, Exception) for r in results)


async def test_unsupported_task_fails_before_queueing() -> None:
    backend = EchoBackend()
    batcher = await started(backend)
    with pytest.raises(CapabilityError):
        await batcher.submit(item(20, task="<OD>"))
    assert batcher.queue_depth == 0
    await batcher.stop()


async def test_stop_settles_every_waiting_future() -> None:
    backend = EchoBackend(delay=0.2)
    batcher = await started(backend, max_batch_size=1, inflight_batches=1)
    tasks = [asyncio.create_task(batcher.submit(item(20 + i))) for i in range(5)]
    await asyncio.sleep(0.05)
    await batcher.stop()
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
    assert len(results) == 5


async def test_items_of_different_shapes_are_batched_apart() -> None:
    class Shaped(EchoBackend):
        def shape_key(self, item: Prompted) -> object:
            return item.image.width > 100

    backend = Shaped()
    batcher = await started(backend)
    gens = await asyncio.gather(*(batcher.submit(item(50 if i % 2 else 150)) for i in range(8)))
    await batcher.stop()
    assert [g.text.split("x")[0] for g in gens] == ["150", "50"] * 4
    assert sorted(backend.batches) == [4, 4]


async def test_while_the_device_is_busy_a_partial_batch_keeps_filling() -> None:
    backend = EchoBackend(delay=0.3)
    batcher = await started(backend, max_batch_size=8, max_wait_s=0.01)
    first = asyncio.create_task(batcher.submit(item(20)))
    await asyncio.sleep(0.05)  # the first image is on the device alone
    later = []
    for i in range(8):
        later.append(asyncio.create_task(batcher.submit(item(30 + i))))
        await asyncio.sleep(0.02)  # arrivals slower than max_wait
    await asyncio.gather(first, *later)
    await batcher.stop()
    assert backend.batches == [1, 8]


async def test_an_idle_device_runs_a_partial_batch_after_max_wait() -> None:
    backend = EchoBackend()
    batcher = await started(backend, max_batch_size=8, max_wait_s=0.02)
    gens = await asyncio.gather(*(batcher.submit(item(20 + i)) for i in range(3)))
    await batcher.stop()
    assert len(gens) == 3 and backend.batches == [3]


async def test_a_partial_batch_waits_a_share_of_the_last_device_time() -> None:
    backend = EchoBackend(delay=0.4)
    batcher = await started(backend, max_batch_size=4, max_wait_s=0.01, adaptive_wait=0.5, inflight_batches=1)
    await asyncio.gather(*(batcher.submit(item(20 + i)) for i in range(4)))
    assert 0.19 <= batcher.wait_s <= 0.3
    later = []
    for i in range(4):  # closed-loop clients coming back 50 ms apart, on an idle device
        later.append(asyncio.create_task(batcher.submit(item(30 + i))))
        await asyncio.sleep(0.05)
    await asyncio.gather(*later)
    await batcher.stop()
    assert backend.batches == [4, 4]
