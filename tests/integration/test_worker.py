"""The job worker against a real store, with a fake enricher and fake sinks (no models)."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest

from descry.errors import CorruptImage, DeliveryError, SourceFetchError
from descry.jobs.inputs import ItemInput, new_job_id, save_uploads
from descry.jobs.store import ItemState, SqlJobStore
from descry.jobs.worker import Worker, params_hash
from descry.schemas import CaptionRequest, Enrichment, JobState
from tests.jobs_helpers import DATABASES, FakeEnricher, database, fast_settings, open_store, path_inputs, spec

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def store(tmp_path: Path):
    async with open_store("sqlite", tmp_path) as opened:
        yield opened


class Recorder:
    """A sink that records what it was given and can fail the first N times."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.delivered: list[str] = []

    async def __call__(self, enrichment: Enrichment, item: ItemInput) -> None:
        if self.failures:
            self.failures -= 1
            raise DeliveryError("sink is down", hint="it comes back")
        self.delivered.append(enrichment.name)


async def test_worker_processes_a_job_and_delivers_each_result_once(store: SqlJobStore) -> None:
    job = await store.create_job(spec(detail="detailed"), path_inputs(10))
    enricher, sink = FakeEnricher(), Recorder()
    worker = Worker(store, enricher, settings=fast_settings(), deliver=sink, worker_id="w1")
    stats = await worker.run_until_idle()
    status = await store.get_job(job)
    assert (status.state, status.done, status.failed) == (JobState.completed, 10, 0)
    assert sorted(enricher.calls) == sorted(i.uri for i in path_inputs(10))
    assert sorted(sink.delivered) == sorted(i.name for i in path_inputs(10))
    page = await store.results(job, limit=100)
    assert [r.result.name for r in page] == [i.name for i in path_inputs(10)]
    assert all(r.result.params == {"detail": "detailed"} for r in page)
    for r in page:
        assert await store.is_delivered(f"{job}:{(await _item_id(store, job, r.index))}:default")
    assert (stats.processed, stats.completed, stats.delivered, stats.failed) == (10, 10, 10, 0)


async def _item_id(store: SqlJobStore, job: str, index: int) -> int:
    from sqlalchemy import select

    from descry.jobs.tables import items

    async with store.engine.connect() as conn:
        query = select(items.c.id).where(items.c.job_id == job, items.c.seq == index)
        return (await conn.execute(query)).scalar_one()


async def test_retryable_errors_are_retried_and_others_fail(store: SqlJobStore) -> None:
    job = await store.create_job(spec(), path_inputs(3))
    enricher = FakeEnricher()
    enricher.raises["img0000.jpg"] = [SourceFetchError("timeout", hint="retry")]
    enricher.raises["img0001.jpg"] = [CorruptImage("not an image", hint="re-export it")]
    stats = await Worker(store, enricher, settings=fast_settings()).run_until_idle()
    status = await store.get_job(job)
    assert (status.state, status.done, status.failed) == (JobState.completed_with_errors, 2, 1)
    r0, r1, r2 = await store.results(job)
    assert (r0.state, r0.attempts, r0.error) == (ItemState.done, 2, None)
    assert (r1.state, r1.attempts, r1.error.code, r1.error.name) == (ItemState.failed, 1, "corrupt_image", r1.name)
    assert "re-export it" in r1.error.message
    assert r2.state == ItemState.done
    assert Counter(enricher.calls)[path_inputs(1)[0].uri] == 2
    assert (stats.retried, stats.failed, stats.completed) == (1, 1, 2)


async def test_retryable_errors_fail_after_max_attempts(store: SqlJobStore) -> None:
    job = await store.create_job(spec(), path_inputs(1))
    enricher = FakeEnricher()
    enricher.raises["img0000.jpg"] = [SourceFetchError("timeout") for _ in range(10)]
    await Worker(store, enricher, settings=fast_settings(max_attempts=3)).run_until_idle()
    [r] = await store.results(job)
    assert (r.state, r.attempts, r.error.code) == (ItemState.failed, 3, "fetch_failed")
    assert len(enricher.calls) == 3
    assert (await store.get_job(job)).state == JobState.failed


async def test_unexpected_exceptions_fail_the_item_as_internal_error(store: SqlJobStore) -> None:
    job = await store.create_job(spec(), path_inputs(1))
    enricher = FakeEnricher()
    enricher.raises["img0000.jpg"] = [ZeroDivisionError("boom")]
    await Worker(store, enricher, settings=fast_settings()).run_until_idle()
    [r] = await store.results(job)
    assert (r.state, r.error.code) == (ItemState.failed, "internal_error")
    assert "ZeroDivisionError" in r.error.message


async def test_failed_delivery_is_retried_without_processing_again(store: SqlJobStore) -> None:
    job = await store.create_job(spec(), path_inputs(2))
    enricher, good, flaky = FakeEnricher(), Recorder(), Recorder(failures=1)
    worker = Worker(store, enricher, settings=fast_settings(concurrency=1), deliver={"good": good, "flaky": flaky})
    stats = await worker.run_until_idle()
    assert (await store.get_job(job)).state == JobState.completed
    assert len(enricher.calls) == 2
    assert sorted(good.delivered) == sorted(flaky.delivered) == ["img0000.jpg", "img0001.jpg"]
    assert stats.retried == 1 and stats.delivered == 4


async def test_request_sinks_choose_among_configured_sinks(store: SqlJobStore) -> None:
    chosen = await store.create_job(spec(sinks=["b"]), path_inputs(1, "c"))
    none = await store.create_job(spec(sinks=[]), path_inputs(1, "n"))
    unknown = await store.create_job(spec(sinks=["nope"]), path_inputs(1, "u"))
    a, b = Recorder(), Recorder()
    await Worker(store, FakeEnricher(), settings=fast_settings(), deliver={"a": a, "b": b}).run_until_idle()
    assert (a.delivered, b.delivered) == ([], ["c0000.jpg"])
    assert (await store.get_job(chosen)).state == (await store.get_job(none)).state == JobState.completed
    [r] = await store.results(unknown)
    assert r.error.code == "config_error" and "configured sinks: a, b" in r.error.message


async def test_cache_reuses_results_for_identical_uploads(store: SqlJobStore, tmp_path: Path) -> None:
    job_id = new_job_id()
    inputs = save_uploads(tmp_path, job_id, [("a.jpg", b"same"), ("b.jpg", b"same"), ("c.jpg", b"other")])
    job = await store.create_job(spec(asset_id="asset-1"), inputs, job_id=job_id)
    enricher = FakeEnricher()
    worker = Worker(store, enricher, settings=fast_settings(concurrency=1), model="tiny-blip")
    stats = await worker.run_until_idle()
    assert (stats.processed, stats.cached) == (2, 1)
    results = await store.results(job)
    assert [r.result.name for r in results] == ["a.jpg", "b.jpg", "c.jpg"]
    assert results[1].result.caption == results[0].result.caption
    assert {r.result.asset_id for r in results} == {"asset-1"}
    later = await store.create_job(spec(detail="detailed"), save_uploads(tmp_path, new_job_id(), [("d.jpg", b"same")]))
    stats = await worker.run_until_idle(later)
    assert stats.processed == 3, "different request options must not hit the cache"


async def test_cache_hashes_path_inputs(store: SqlJobStore, tmp_path: Path) -> None:
    for name in ("x.jpg", "y.jpg"):
        (tmp_path / name).write_bytes(b"same bytes")
    inputs = [ItemInput(kind="path", uri=str(tmp_path / n), name=n) for n in ("x.jpg", "y.jpg")]
    await store.create_job(spec(), inputs)
    enricher = FakeEnricher()
    await Worker(store, enricher, settings=fast_settings(concurrency=1), model="m").run_until_idle()
    assert len(enricher.calls) == 1


def test_params_hash_ignores_asset_id_and_sinks() -> None:
    base = CaptionRequest(prompt="p")
    assert params_hash(base) == params_hash(CaptionRequest(prompt="p", asset_id="x", sinks=["a"]))
    assert params_hash(base) != params_hash(CaptionRequest(prompt="q"))


async def test_cancel_stops_in_flight_items(store: SqlJobStore) -> None:
    job = await store.create_job(spec(), path_inputs(20))
    enricher = FakeEnricher(delay=0.3)
    worker = Worker(store, enricher, settings=fast_settings(lease_seconds=0.3))
    stop = asyncio.Event()
    run = asyncio.create_task(worker.run_forever(stop))
    while not enricher.calls:
        await asyncio.sleep(0.01)
    await store.cancel(job)
    await asyncio.sleep(0.4)
    stop.set()
    stats = await run
    status = await store.get_job(job)
    assert status.state == JobState.cancelled and status.done < 20
    assert stats.lost >= 1
    assert await store.pending() == 0


async def test_graceful_stop_releases_unfinished_items(store: SqlJobStore) -> None:
    job = await store.create_job(spec(), path_inputs(4))
    slow = FakeEnricher(delay=30)
    worker = Worker(store, slow, settings=fast_settings(drain_seconds=0.1))
    stop = asyncio.Event()
    run = asyncio.create_task(worker.run_forever(stop))
    while len(slow.calls) < 4:
        await asyncio.sleep(0.01)
    stop.set()
    stats = await asyncio.wait_for(run, 5)
    assert stats.released == 4
    assert {(r.state, r.attempts) for r in await store.results(job)} == {(ItemState.queued, 0)}
    fast = FakeEnricher()
    await Worker(store, fast, settings=fast_settings()).run_until_idle()
    assert (await store.get_job(job)).state == JobState.completed


async def test_graceful_stop_lets_quick_items_finish(store: SqlJobStore) -> None:
    job = await store.create_job(spec(), path_inputs(4))
    enricher = FakeEnricher(delay=0.2)
    worker = Worker(store, enricher, settings=fast_settings(drain_seconds=5))
    stop = asyncio.Event()
    run = asyncio.create_task(worker.run_forever(stop))
    while len(enricher.calls) < 4:
        await asyncio.sleep(0.01)
    stop.set()
    stats = await run
    assert (stats.completed, stats.released) == (4, 0)
    assert (await store.get_job(job)).state == JobState.completed


async def test_run_forever_cleans_up_old_jobs_and_uploads(store: SqlJobStore, tmp_path: Path) -> None:
    job_id = new_job_id()
    await store.create_job(spec(), save_uploads(tmp_path, job_id, [("a.jpg", b"a")]), job_id=job_id)
    await Worker(store, FakeEnricher(), settings=fast_settings()).run_until_idle()
    await asyncio.sleep(0.05)
    worker = Worker(store, FakeEnricher(), settings=fast_settings(retention_days=1e-7), data_dir=tmp_path)
    stop = asyncio.Event()
    run = asyncio.create_task(worker.run_forever(stop))
    await asyncio.sleep(0.2)
    stop.set()
    await run
    assert await store.list_jobs() == []
    assert not (tmp_path / "uploads" / job_id).exists()


@pytest.mark.parametrize("kind", DATABASES)
async def test_two_workers_share_a_job_without_double_claims(kind: str, tmp_path: Path) -> None:
    async with database(kind, tmp_path) as (url, schema):
        stores = [SqlJobStore(url, schema=schema) for _ in range(2)]
        for s in stores:
            await s.open()
        try:
            job = await stores[0].create_job(spec(), path_inputs(200))
            processed: list[tuple[str, str]] = []

            def recording(worker_id: str) -> FakeEnricher:
                class Tracking(FakeEnricher):
                    async def __call__(self, item: ItemInput, request: CaptionRequest) -> Enrichment:
                        processed.append((worker_id, item.uri))
                        await asyncio.sleep(0.002)
                        return await super().__call__(item, request)

                return Tracking()

            workers = [
                Worker(s, recording(f"w{n}"), settings=fast_settings(concurrency=4), worker_id=f"w{n}")
                for n, s in enumerate(stores)
            ]
            await asyncio.gather(*(w.run_until_idle() for w in workers))
            uris = [uri for _, uri in processed]
            assert len(uris) == len(set(uris)) == 200
            assert {w for w, _ in processed} == {"w0", "w1"}
            status = await stores[1].get_job(job)
            assert (status.state, status.done) == (JobState.completed, 200)
        finally:
            for s in stores:
                await s.close()
