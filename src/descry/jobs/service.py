"""Durable jobs wired to descry: the store, workers that run images through a Descry, and sink delivery.

``descry serve`` runs this in-process; ``descry worker`` runs only the workers, so several
machines can share one PostgreSQL database.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from descry.config import Settings
from descry.core import Descry
from descry.errors import InputError
from descry.jobs.inputs import ItemInput
from descry.jobs.store import SqlJobStore, submit_uploads
from descry.jobs.worker import Deliver, Worker, WorkerStats
from descry.schemas import CaptionRequest, Enrichment, ImageRef, JobSpec
from descry.sinks import known_sinks
from descry.sinks.pool import SinkPool

log = logging.getLogger("descry.jobs")


class JobService:
    """Owns the job store and, when given a Descry, the workers that process its images.

    The Descry's trust policy is the jobs' (the API's and ``descry worker``'s: network, so server
    paths are read only inside the allowed roots); its sinks are the ones jobs deliver to.
    """

    def __init__(
        self,
        settings: Settings,
        descry: Descry | None = None,
        store: SqlJobStore | None = None,
        *,
        sinks: SinkPool | None = None,
    ) -> None:
        self.settings = settings
        self.descry = descry
        url = settings.jobs.url_for(settings.data_dir)
        self.store = store or SqlJobStore(url, schema=settings.jobs.database_schema)
        self.sinks = sinks or (descry.sinks if descry is not None else SinkPool(settings))
        self._owns_sinks = sinks is None and descry is None
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[WorkerStats]] = []

    async def open(self) -> None:
        await self.store.open()

    async def close(self) -> None:
        await self.stop_workers()
        if self._owns_sinks:
            await self.sinks.close()
        await self.store.close()

    async def submit(
        self,
        request: CaptionRequest,
        files: Sequence[ImageRef | tuple[str, bytes]] = (),
        others: Sequence[ImageRef] = (),
        *,
        idempotency_key: str | None = None,
    ) -> str:
        """Save the uploads and write the job with all its images before returning its id.

        The job's sinks are decided here by the one rule (a job that names none gets the defaults)
        and stored with it; an unknown sink is an InputError (400) before anything is stored.
        """
        sinks = self.sinks.names_for(request.sinks, asset_id=request.asset_id, in_reply=False)
        if request.dry_run or request.policy is not None:
            raise InputError(
                "a job delivers with the server's metadata policy and cannot be a dry run",
                hint="leave policy and dry_run out (the server's DESCRY_SINKS__POLICY applies), or use /v1/caption",
            )
        if self.descry is not None:  # e.g. a language the model cannot write: refused before anything is stored
            self.descry.enricher.check(request)
        request = request.model_copy(update={"sinks": sinks})
        spec = JobSpec(request=request, sources=[ref.name for ref in others])
        return await submit_uploads(
            self.store, self.settings.data_dir, spec, files, others=others, idempotency_key=idempotency_key
        )

    def worker(self) -> Worker:
        """A worker bound to this service's Descry and sinks."""
        if self.descry is None:
            raise RuntimeError("JobService.worker needs a Descry")
        return Worker(
            self.store,
            self._process,
            settings=self.settings.jobs,
            deliver=self._deliveries(),
            model=self.descry.model_name,
            data_dir=self.settings.data_dir,
            default_sinks=self.settings.sinks.default,
        )

    def start_workers(self, count: int | None = None) -> None:
        """Run workers as background tasks until stop_workers."""
        self._stop.clear()
        for _ in range(count or 1):
            self._tasks.append(asyncio.create_task(self.worker().run_forever(self._stop)))

    async def stop_workers(self) -> None:
        """Let in-flight images finish (or give them back) and stop."""
        self._stop.set()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _process(self, item: ItemInput, request: CaptionRequest) -> Enrichment:
        assert self.descry is not None
        ref = await asyncio.to_thread(item.to_ref)
        result = await self.descry.enrich(ref, request, sinks=[])  # the worker delivers, once per ledger key
        assert result.enrichment is not None
        return result.enrichment

    def _deliveries(self) -> dict[str, Deliver]:
        """One deliver callable per known sink; a request's ``sinks`` pick among them, else the defaults."""

        def deliver_to(name: str) -> Deliver:
            async def deliver(enrichment: Enrichment, item: ItemInput) -> None:
                (sink,) = await self.sinks.get([name])
                await sink.deliver(enrichment, ImageRef(kind=item.kind, name=item.name, uri=item.uri))

            return deliver

        return {name: deliver_to(name) for name in known_sinks()}
