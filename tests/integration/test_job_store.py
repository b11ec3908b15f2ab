"""The SQL job store on SQLite and PostgreSQL: one suite, both databases."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from descry.errors import ConfigError, InputError, NotFound
from descry.jobs.inputs import ItemInput, new_job_id, remove_uploads, save_uploads
from descry.jobs.store import ItemState, SqlJobStore, normalise_url, submit_uploads
from descry.jobs.tables import metadata
from descry.schemas import ImageRef, ItemError, JobState, SourceKind
from tests.jobs_helpers import DATABASES, fake_enrichment, open_store, path_inputs, spec

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(params=DATABASES)
async def store(request: pytest.FixtureRequest, tmp_path: Path):
    async with open_store(request.param, tmp_path) as opened:
        yield opened


def _result(item: ItemInput) -> dict:
    return fake_enrichment(item, spec().request).model_dump(mode="json")


def _err(name: str, code: str = "corrupt_image") -> ItemError:
    return ItemError(name=name, code=code, message=f"{name} is broken")


async def test_migrations_create_exactly_the_model_schema(store: SqlJobStore) -> None:
    def diff(conn: sa.Connection) -> list:
        ctx = MigrationContext.configure(conn, opts={"version_table": "descry_alembic_version"})
        return compare_metadata(ctx, metadata)

    async with store.engine.connect() as conn:
        assert await conn.run_sync(diff) == []
        version = await conn.execute(sa.text("SELECT version_num FROM descry_alembic_version"))
        assert version.scalar_one() == "0001"


async def test_open_twice_is_a_no_op(store: SqlJobStore) -> None:
    again = SqlJobStore(store.url, schema=store.schema)
    await again.open()
    job = await again.create_job(spec(), path_inputs(1))
    assert (await store.get_job(job)).total == 1
    await again.close()


async def test_create_job_writes_all_items_and_reports_progress(store: SqlJobStore) -> None:
    job = await store.create_job(spec(detail="detailed"), path_inputs(5))
    status = await store.get_job(job)
    assert (status.state, status.total, status.done, status.failed) == (JobState.queued, 5, 0, 0)
    page = await store.results(job)
    assert [r.index for r in page] == [0, 1, 2, 3, 4]
    assert {r.state for r in page} == {ItemState.queued}
    assert await store.pending(job) == 5
    assert [s.id for s in await store.list_jobs()] == [job]
    assert await store.list_jobs(state=JobState.completed) == []


async def test_create_job_rejects_empty_and_unknown_jobs_are_not_found(store: SqlJobStore) -> None:
    with pytest.raises(InputError):
        await store.create_job(spec(), [])
    with pytest.raises(NotFound) as info:
        await store.get_job("0" * 32)
    assert info.value.code == "not_found"
    with pytest.raises(NotFound):
        await store.results("0" * 32)
    with pytest.raises(NotFound):
        await store.cancel("0" * 32)


async def test_create_job_accepts_image_refs_but_not_unsaved_uploads(store: SqlJobStore) -> None:
    ref = ImageRef(kind=SourceKind.url, name="a.jpg", uri="https://example.com/a.jpg")
    job = await store.create_job(spec(), [ref])
    [claimed] = await store.claim("w1", 1, 30)
    assert (claimed.job_id, claimed.input.kind, claimed.input.uri) == (job, SourceKind.url, ref.uri)
    with pytest.raises(InputError, match="save_uploads"):
        await store.create_job(spec(), [ImageRef(kind=SourceKind.upload, name="b.jpg", data=b"x")])


async def test_idempotency_key_returns_the_first_job(store: SqlJobStore) -> None:
    first = await store.create_job(spec(), path_inputs(3), idempotency_key="batch-42")
    again = await store.create_job(spec(), path_inputs(7), idempotency_key="batch-42")
    other = await store.create_job(spec(), path_inputs(2), idempotency_key="batch-43")
    assert again == first != other
    assert (await store.get_job(first)).total == 3
    assert await store.find_job("batch-42") == first
    assert await store.pending() == 5


async def test_concurrent_creates_with_one_key_make_one_job(store: SqlJobStore) -> None:
    ids = await asyncio.gather(*(store.create_job(spec(), path_inputs(2), idempotency_key="same") for _ in range(5)))
    assert len(set(ids)) == 1
    assert len(await store.list_jobs()) == 1


async def test_claim_hands_out_each_item_once_in_order(store: SqlJobStore) -> None:
    job = await store.create_job(spec(prompt="p"), path_inputs(5))
    first = await store.claim("w1", 3, 30)
    second = await store.claim("w2", 3, 30)
    assert [i.seq for i in first] == [0, 1, 2]
    assert [i.seq for i in second] == [3, 4]
    assert await store.claim("w3", 3, 30) == []
    assert all(i.attempts == 1 and i.job_id == job and i.request.prompt == "p" for i in first + second)
    assert (await store.get_job(job)).state == JobState.running
    assert await store.claim("w1", 0, 30) == []


async def test_claim_can_be_scoped_to_one_job(store: SqlJobStore) -> None:
    await store.create_job(spec(), path_inputs(2, "a"))
    second = await store.create_job(spec(), path_inputs(2, "b"))
    claimed = await store.claim("w1", 5, 30, job_id=second)
    assert {i.job_id for i in claimed} == {second} and len(claimed) == 2


async def test_complete_only_by_the_lease_holder_and_idempotent(store: SqlJobStore) -> None:
    job = await store.create_job(spec(), path_inputs(2))
    a, b = await store.claim("w1", 2, 30)
    assert not await store.complete_item(a.id, "intruder", _result(a.input))
    assert await store.complete_item(a.id, "w1", _result(a.input))
    assert await store.complete_item(a.id, "w1", _result(a.input))
    status = await store.get_job(job)
    assert (status.state, status.done) == (JobState.running, 1)
    assert await store.complete_item(b.id, "w1", _result(b.input))
    status = await store.get_job(job)
    assert (status.state, status.done, status.failed) == (JobState.completed, 2, 0)
    assert [r.result.name for r in await store.results(job)] == [a.input.name, b.input.name]
    assert await store.pending(job) == 0


async def test_final_failures_give_completed_with_errors_or_failed(store: SqlJobStore) -> None:
    mixed = await store.create_job(spec(), path_inputs(2, "m"))
    a, b = await store.claim("w1", 2, 30)
    assert await store.fail_item(a.id, "w1", _err(a.input.name)) == ItemState.failed
    await store.complete_item(b.id, "w1", _result(b.input))
    status = await store.get_job(mixed)
    assert (status.state, status.done, status.failed) == (JobState.completed_with_errors, 1, 1)
    assert "1 of 2" in status.message
    page = await store.results(mixed)
    assert page[0].error.code == "corrupt_image" and page[0].result is None
    assert page[1].error is None and page[1].result is not None

    broken = await store.create_job(spec(), path_inputs(1, "x"))
    [c] = await store.claim("w1", 1, 30)
    await store.fail_item(c.id, "w1", _err(c.input.name))
    assert (await store.get_job(broken)).state == JobState.failed
    assert await store.fail_item(c.id, "w1", _err(c.input.name)) is None


async def test_retry_waits_for_backoff_then_reclaims(store: SqlJobStore) -> None:
    job = await store.create_job(spec(), path_inputs(1))
    [item] = await store.claim("w1", 1, 30)
    error = _err(item.input.name, "fetch_failed")
    assert await store.fail_item(item.id, "w1", error, retry_in=0.3) == ItemState.queued
    assert await store.claim("w2", 1, 30) == []
    [page] = await store.results(job)
    assert (page.state, page.error.code) == (ItemState.queued, "fetch_failed")
    await asyncio.sleep(0.35)
    [again] = await store.claim("w2", 1, 30)
    assert (again.id, again.attempts) == (item.id, 2)
    await store.complete_item(again.id, "w2", _result(again.input))
    [page] = await store.results(job)
    assert (page.state, page.error, page.attempts) == (ItemState.done, None, 2)


async def test_cancel_stops_queued_and_running_items(store: SqlJobStore) -> None:
    job = await store.create_job(spec(), path_inputs(4))
    running = await store.claim("w1", 2, 30)
    status = await store.cancel(job)
    assert status.state == JobState.cancelled and status.message
    assert await store.claim("w2", 4, 30) == []
    assert await store.heartbeat("w1", [i.id for i in running], 30) == set()
    assert not await store.complete_item(running[0].id, "w1", _result(running[0].input))
    assert await store.fail_item(running[1].id, "w1", _err("x")) is None
    assert {r.state for r in await store.results(job)} == {ItemState.cancelled}
    assert (await store.cancel(job)).state == JobState.cancelled
    assert await store.pending(job) == 0


async def test_cancel_leaves_finished_jobs_alone(store: SqlJobStore) -> None:
    job = await store.create_job(spec(), path_inputs(1))
    [item] = await store.claim("w1", 1, 30)
    await store.complete_item(item.id, "w1", _result(item.input))
    assert (await store.cancel(job)).state == JobState.completed


async def test_results_are_paged_in_item_order(store: SqlJobStore) -> None:
    job = await store.create_job(spec(), path_inputs(7))
    claimed = await store.claim("w1", 7, 30)
    for item in reversed(claimed):
        await store.complete_item(item.id, "w1", _result(item.input))
    pages = [await store.results(job, offset=o, limit=3) for o in (0, 3, 6, 9)]
    assert [[r.index for r in p] for p in pages] == [[0, 1, 2], [3, 4, 5], [6], []]
    assert [r.result.name for p in pages for r in p] == [f"img{i:04d}.jpg" for i in range(7)]


async def test_expired_lease_is_claimed_again(store: SqlJobStore) -> None:
    await store.create_job(spec(), path_inputs(1))
    [item] = await store.claim("dead", 1, 0.2)
    assert await store.claim("w2", 1, 30) == []
    await asyncio.sleep(0.3)
    [again] = await store.claim("w2", 1, 30)
    assert (again.id, again.attempts) == (item.id, 2)
    assert await store.heartbeat("dead", [item.id], 30) == set()
    assert not await store.complete_item(item.id, "dead", _result(item.input))
    assert await store.complete_item(again.id, "w2", _result(item.input))


async def test_heartbeat_keeps_the_lease(store: SqlJobStore) -> None:
    await store.create_job(spec(), path_inputs(1))
    [item] = await store.claim("w1", 1, 0.3)
    for _ in range(3):
        await asyncio.sleep(0.15)
        assert await store.heartbeat("w1", [item.id], 0.3) == {item.id}
    assert await store.claim("w2", 1, 30) == []


async def test_items_whose_worker_keeps_dying_fail_after_max_attempts(store: SqlJobStore) -> None:
    job = await store.create_job(spec(), path_inputs(1))
    for attempt in (1, 2):
        [item] = await store.claim(f"w{attempt}", 1, 0.05, max_attempts=2)
        assert item.attempts == attempt
        await asyncio.sleep(0.1)
    assert await store.claim("w3", 1, 30, max_attempts=2) == []
    [page] = await store.results(job)
    assert (page.state, page.error.code) == (ItemState.failed, "worker_lost")
    assert (await store.get_job(job)).state == JobState.failed


async def test_release_returns_items_without_counting_the_attempt(store: SqlJobStore) -> None:
    await store.create_job(spec(), path_inputs(2))
    claimed = await store.claim("w1", 2, 30)
    assert await store.release("w1", [i.id for i in claimed]) == 2
    again = await store.claim("w2", 2, 30)
    assert [(i.id, i.attempts) for i in again] == [(i.id, 1) for i in claimed]


async def test_save_result_is_kept_across_a_reclaim(store: SqlJobStore) -> None:
    job = await store.create_job(spec(), path_inputs(1))
    [item] = await store.claim("w1", 1, 0.1)
    assert await store.save_result(item.id, "w1", _result(item.input))
    assert not await store.save_result(item.id, "other", _result(item.input))
    await asyncio.sleep(0.15)
    [again] = await store.claim("w2", 1, 30)
    assert again.result["name"] == item.input.name
    assert await store.complete_item(again.id, "w2")
    [page] = await store.results(job)
    assert page.result.caption == f"caption for {item.input.name}"


async def test_result_cache(store: SqlJobStore) -> None:
    assert await store.cache_get("h1", "blip", "p1") is None
    assert await store.cache_put("h1", "blip", "p1", {"caption": "first"})
    assert not await store.cache_put("h1", "blip", "p1", {"caption": "second"})
    assert await store.cache_get("h1", "blip", "p1") == {"caption": "first"}
    assert await store.cache_get("h1", "florence", "p1") is None
    assert await store.cache_get("h1", "blip", "p2") is None


async def test_delivery_ledger_records_each_key_once(store: SqlJobStore) -> None:
    assert not await store.is_delivered("j:1:webhook")
    assert await store.record_delivery("j:1:webhook", "webhook")
    assert not await store.record_delivery("j:1:webhook", "webhook")
    assert await store.is_delivered("j:1:webhook")
    results = await asyncio.gather(*(store.record_delivery("j:2:xmp", "xmp") for _ in range(5)))
    assert sorted(results) == [False, False, False, False, True]


async def test_cleanup_removes_only_old_finished_jobs(store: SqlJobStore) -> None:
    done = await store.create_job(spec(), path_inputs(1, "d"))
    [item] = await store.claim("w1", 1, 30, job_id=done)
    await store.complete_item(item.id, "w1", _result(item.input))
    running = await store.create_job(spec(), path_inputs(1, "r"))
    await store.cache_put("h", "m", "p", {"caption": "x"})
    await store.record_delivery("k", "s")
    assert await store.cleanup(3600) == []
    await asyncio.sleep(0.05)
    assert await store.cleanup(0.01) == [done]
    with pytest.raises(NotFound):
        await store.get_job(done)
    assert (await store.get_job(running)).state == JobState.queued
    assert await store.cache_get("h", "m", "p") is None
    assert not await store.is_delivered("k")


async def test_two_engines_claim_disjoint_items_concurrently(store: SqlJobStore) -> None:
    await store.create_job(spec(), path_inputs(60))
    other = SqlJobStore(store.url, schema=store.schema)
    await other.open()
    try:
        stores = [store, other] * 3

        async def grab(index: int) -> list[int]:
            got: list[int] = []
            while batch := await stores[index].claim(f"w{index}", 3, 30):
                got += [i.id for i in batch]
            return got

        claimed = await asyncio.gather(*(grab(i) for i in range(len(stores))))
    finally:
        await other.close()
    flat = [i for part in claimed for i in part]
    assert len(flat) == len(set(flat)) == 60


def test_urls_pick_async_drivers_and_reject_others() -> None:
    assert normalise_url("sqlite:///x.db").startswith("sqlite+aiosqlite:///")
    assert normalise_url("postgresql://u:pw@h/db") == "postgresql+asyncpg://u:pw@h/db"
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        normalise_url("mysql://h/db")


async def test_unreachable_database_says_what_to_check() -> None:
    store = SqlJobStore("postgresql+asyncpg://postgres@127.0.0.1:1/none")
    with pytest.raises(ConfigError, match="DESCRY_JOBS__DATABASE_URL"):
        await store.open()
    with pytest.raises(ConfigError, match="open"):
        await store.pending()


async def test_sqlite_store_creates_its_folder_and_uses_wal(tmp_path: Path) -> None:
    store = SqlJobStore(f"sqlite:///{tmp_path / 'deep' / 'dir' / 'descry.db'}")
    await store.open()
    async with store.engine.connect() as conn:
        assert (await conn.execute(sa.text("PRAGMA journal_mode"))).scalar() == "wal"
    await store.close()
    assert (tmp_path / "deep" / "dir" / "descry.db").exists()


def test_save_uploads_writes_files_with_hashes(tmp_path: Path) -> None:
    job_id = new_job_id()
    files = [("../../etc/passwd", b"one"), ImageRef(kind=SourceKind.upload, name="b c.png", data=b"two")]
    inputs = save_uploads(tmp_path, job_id, files)
    folder = tmp_path / "uploads" / job_id
    assert [Path(i.uri).parent for i in inputs] == [folder.resolve()] * 2
    assert [i.name for i in inputs] == ["../../etc/passwd", "b c.png"]
    assert [Path(i.uri).read_bytes() for i in inputs] == [b"one", b"two"]
    assert len({i.content_hash for i in inputs}) == 2 and all(len(i.content_hash) == 64 for i in inputs)
    assert inputs[1].to_ref().data == b"two"
    assert not list(folder.glob("*.part"))
    assert remove_uploads(tmp_path, job_id) and not folder.exists()
    with pytest.raises(InputError):
        save_uploads(tmp_path, "../escape", files)
    with pytest.raises(InputError, match="no bytes"):
        save_uploads(tmp_path, job_id, [ImageRef(kind=SourceKind.upload, name="x")])


async def test_timestamps_are_recent(store: SqlJobStore) -> None:
    before = time.time()
    job = await store.create_job(spec(), path_inputs(1))
    status = await store.get_job(job)
    assert before - 1 <= status.created_at <= status.updated_at <= time.time() + 1


async def test_submit_uploads_saves_files_then_creates_the_job(store: SqlJobStore, tmp_path: Path) -> None:
    url = ImageRef(kind=SourceKind.url, name="u.jpg", uri="https://example.com/u.jpg")
    job = await submit_uploads(store, tmp_path, spec(), [("a.jpg", b"a")], others=[url], idempotency_key="k")
    page = await store.results(job)
    assert [(r.index, r.name) for r in page] == [(0, "a.jpg"), (1, "u.jpg")]
    [upload, _] = await store.claim("w1", 2, 30)
    assert Path(upload.input.uri).read_bytes() == b"a" and upload.input.content_hash
    assert await submit_uploads(store, tmp_path, spec(), [("b.jpg", b"b")], idempotency_key="k") == job
    assert [p.name for p in (tmp_path / "uploads").iterdir()] == [job]
    with pytest.raises(InputError):
        await submit_uploads(store, tmp_path, spec(), [])
    assert [p.name for p in (tmp_path / "uploads").iterdir()] == [job]
