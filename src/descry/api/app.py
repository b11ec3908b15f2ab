"""The FastAPI application: a thin factory around one ``Descry`` (library first, HTTP second).

``create_app(settings)`` builds everything on ``app.state``; the lifespan starts the model load in
the background so ``/health`` answers (``loading``) while the weights load, and a load failure
is reported by ``/health`` and ``/ready`` instead of crashing the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from descry._version import __version__
from descry.api.batches import BatchManager
from descry.api.docs import install_docs
from descry.api.errors import install_error_handlers
from descry.api.jobs import StoreBatches
from descry.api.logs import configure_logging
from descry.api.metrics import ApiMetrics
from descry.api.middleware import RequestMiddleware
from descry.api.openapi import install_openapi
from descry.api.routes import health, jobs, kobold, ollama, openai, seed, v1
from descry.api.security import install_security, require_scope
from descry.api.service import CaptionService
from descry.config import Settings
from descry.core import Descry
from descry.engine.pipeline import Engine
from descry.errors import DescryError
from descry.sources import TrustPolicy

log = logging.getLogger("descry.api")

DESCRIPTION = """Caption and enrich images with vision-language models running on your own hardware.

The canonical API lives under `/v1`. The routes without a prefix (`/infer`, `/api/enrich`,
`/caption`, `/batch-caption`, `/async-batch-caption`) keep the request and response shapes of
the services descry replaces. `/v1/chat/completions` speaks OpenAI's protocol and `/api/chat`,
`/api/generate`, `/api/tags`, `/api/show`, `/api/version` and `/api/ps` speak Ollama's, each with
its own error shape. Errors are JSON: `{"error": {"code", "message"}, "detail", "request_id"}`.
"""


async def _load_model(app: FastAPI) -> None:
    """Load the model; a failure is recorded on the engine state, logged, and never raised."""
    descry: Descry = app.state.descry
    engine = descry.engine
    metrics: ApiMetrics = app.state.metrics
    try:
        await descry.start(on_batch=metrics.on_batch)
    except DescryError as exc:
        log.error("the model failed to load: %s; /health reports it and caption requests get 503", exc)
    except Exception:
        log.exception("the model failed to load; /health reports it and caption requests get 503")
    metrics.model_state(engine.ready, engine.state.load_seconds)
    _start_workers(app)


def _start_workers(app: FastAPI) -> None:
    """Durable-job workers start once the model is ready, so queued images wait in the database."""
    starter = getattr(app.state.batches, "start_workers", None)
    if starter is not None and app.state.engine.ready:
        starter()


def _job_batches(settings: Settings, descry: Descry) -> StoreBatches:
    """The durable job store behind /v1/jobs and /async-batch-caption (part of the server extra)."""
    from descry.jobs.service import JobService

    return StoreBatches(JobService(settings, descry))


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start the Descry object (the model loads in the background) and close it: nothing else."""
    descry: Descry = app.state.descry
    batches: BatchManager = app.state.batches
    await batches.start()
    await descry.open()  # the webhook's outbox is sent from start-up, not from the first request
    loader = None if descry.ready else asyncio.create_task(_load_model(app))
    app.state.loader = loader
    if loader is None:
        _start_workers(app)
    try:
        yield
    finally:
        try:
            await batches.close()
            if loader is not None:
                loader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await loader
        finally:
            await descry.close()


def create_app(
    settings: Settings, *, engine: Engine | None = None, batches: BatchManager | None = None
) -> FastAPI:
    """The HTTP service for one Settings; pass an engine (e.g. with a test backend) to reuse it."""
    docs = settings.server.docs
    app = FastAPI(
        title="descry",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        root_path=settings.server.root_path,
        docs_url=None,  # /docs and /redoc: api.docs serves them without a CDN
        redoc_url=None,
        openapi_url="/openapi.json" if docs else None,
    )
    descry = Descry(settings, policy=TrustPolicy.network(settings.sources), engine=engine, autostart=False)
    engine = descry.engine
    metrics = ApiMetrics()
    metrics.track_queue(lambda: engine.batcher.queue_depth if engine.ready else 0)
    app.state.settings = settings
    app.state.descry = descry
    app.state.engine = engine
    app.state.metrics = metrics
    app.state.sinks = descry.sinks
    app.state.enricher = descry.enricher
    app.state.service = CaptionService(descry, metrics, concurrency=settings.server.batch_concurrency)
    job_batches = _job_batches(settings, descry) if batches is None else None
    app.state.jobs = job_batches.jobs if job_batches else None
    app.state.batches = batches or job_batches

    install_error_handlers(app)
    caption_scope = [Depends(require_scope("caption"))]
    app.include_router(v1.router, dependencies=caption_scope)
    app.include_router(seed.router, dependencies=caption_scope)
    app.include_router(openai.router, dependencies=caption_scope)
    app.include_router(ollama.router, dependencies=caption_scope)
    app.include_router(kobold.router, dependencies=caption_scope)
    app.include_router(health.router)
    app.include_router(jobs.router, dependencies=[Depends(require_scope("jobs"))])
    install_openapi(app)
    if docs:
        install_docs(app)
    install_security(app, settings.security)
    app.add_middleware(
        RequestMiddleware,
        metrics=metrics,
        max_body_bytes=settings.security.max_body_bytes,
        body_timeout=settings.server.body_timeout_s,
    )
    _install_web_page(app)
    return app


def _install_web_page(app: FastAPI) -> None:
    """The web page at ``/`` and its assets under ``/static``; API paths keep their own 404/405 answers."""
    static = Path(__file__).with_name("static")
    app.mount("/static", StaticFiles(directory=static), name="static")

    @app.get("/", include_in_schema=False)
    async def web_page() -> FileResponse:
        return FileResponse(static / "index.html", media_type="text/html")


def app_from_env() -> FastAPI:
    """The uvicorn factory (``descry.api.app:app_from_env``): settings are read at start-up, not import."""
    settings = Settings()
    configure_logging(settings.log_level)
    return create_app(settings)
