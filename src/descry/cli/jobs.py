"""`descry jobs ...` and `descry worker`: the durable job store from the command line."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from descry.cli.console import print_error, stderr_console
from descry.config import Settings
from descry.errors import DescryError

jobs_app = typer.Typer(help="Inspect and cancel durable jobs.", no_args_is_help=True)
T = TypeVar("T")
JobIdArg = Annotated[str, typer.Argument(help="the job's id (from `descry jobs list` or the API)")]


def _with_service(fn: Callable[[Any], Awaitable[T]]) -> T:
    """Open the job store named by the settings, run fn with the service, close it."""
    from descry.jobs.service import JobService

    async def go() -> T:
        service = JobService(Settings())
        await service.open()
        try:
            return await fn(service)
        finally:
            await service.close()

    try:
        return asyncio.run(go())
    except DescryError as exc:
        print_error(stderr_console(), exc)
        raise typer.Exit(2) from exc


@jobs_app.command("list")
def list_jobs(
    limit: Annotated[int, typer.Option(min=1, max=1000, help="how many jobs, newest first")] = 20,
    state: Annotated[str | None, typer.Option(help="queued, running, completed, ...")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """The newest jobs with their progress."""
    from descry.schemas import JobState

    wanted = JobState(state) if state else None
    jobs = _with_service(lambda s: s.store.list_jobs(limit=limit, state=wanted))
    if as_json:
        print(json.dumps([job.model_dump(mode="json") for job in jobs], indent=2))
        return
    table = Table("id", "state", "done", "failed", "total")
    for job in jobs:
        table.add_row(escape(job.id), job.state.value, str(job.done), str(job.failed), str(job.total))
    Console().print(table)


@jobs_app.command("show")
def show(job_id: JobIdArg) -> None:
    """One job's state and progress, as JSON."""
    job = _with_service(lambda s: s.store.get_job(job_id))
    print(job.model_dump_json(indent=2))


@jobs_app.command("cancel")
def cancel(job_id: JobIdArg) -> None:
    """Cancel a job: queued images are not started, running ones stop."""
    job = _with_service(lambda s: s.store.cancel(job_id))
    print(job.model_dump_json(indent=2))


@jobs_app.command("results")
def results(
    job_id: JobIdArg,
    offset: Annotated[int, typer.Option(min=0, help="results to skip (in submission order)")] = 0,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="results in this page")] = 100,
) -> None:
    """A page of a job's results, one JSON line per image, in submission order."""
    rows = _with_service(lambda s: s.store.results(job_id, offset=offset, limit=limit))
    for row in rows:
        print(row.model_dump_json())


def worker(
    count: Annotated[int, typer.Option("--count", "-n", min=1, max=64, help="workers in this process")] = 1,
) -> None:
    """Run job workers without the HTTP server (share one PostgreSQL between machines)."""
    from descry.core import Descry
    from descry.jobs.service import JobService
    from descry.sources import TrustPolicy

    async def go() -> None:
        settings = Settings()
        # jobs come from the API: their server paths are read only inside the allowed roots
        async with Descry(settings, policy=TrustPolicy.network(settings.sources)) as descry:
            await descry.start()
            service = JobService(settings, descry)
            await service.open()
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            service.start_workers(count)
            stderr_console().print(f"{count} worker(s) running on {service.store.dialect}; Ctrl-C stops")
            await stop.wait()
            await service.close()

    try:
        asyncio.run(go())
    except DescryError as exc:
        print_error(stderr_console(), exc)
        raise typer.Exit(2) from exc
