"""`descry serve`: the HTTP API under uvicorn."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from descry.cli.options import ModelOpt, fail
from descry.config import Settings
from descry.errors import MissingDependency


def serve(
    host: Annotated[str | None, typer.Option(help="address to bind (default 0.0.0.0)")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="port (default 8000)")] = None,
    workers: Annotated[int | None, typer.Option(min=1, max=64, help="processes (one model each)")] = None,
    reload: Annotated[bool, typer.Option("--reload", help="restart on code changes (development)")] = False,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning or error")] = None,
    model: ModelOpt = None,
) -> None:
    """Run the HTTP API (docs at /docs); the model loads in the background, /ready says when it is up."""
    try:
        import uvicorn

        from descry.api.connections import uvicorn_options
    except ImportError as exc:
        raise fail(MissingDependency("uvicorn", "server")) from exc
    settings = Settings()
    server = settings.server
    if log_level:
        os.environ["DESCRY_LOG_LEVEL"] = log_level  # the worker processes build their Settings from the env
    if model:
        os.environ["DESCRY_MODEL__NAME"] = model
    level = (log_level or settings.log_level).lower()
    uvicorn.run(
        "descry.api.app:app_from_env",
        factory=True,
        host=host or server.host,
        port=port or server.port,
        workers=None if reload else (workers or server.workers),
        reload=reload,
        log_level=level,
        log_config=None,
        access_log=False,
        # descry's own middleware reads X-Forwarded-For from trusted proxies only; uvicorn must not rewrite it
        forwarded_allow_ips=",".join(settings.security.trusted_proxies) or "",
        proxy_headers=bool(settings.security.trusted_proxies),
        timeout_graceful_shutdown=server.graceful_shutdown_s,
        root_path=server.root_path,
        **uvicorn_options(server),  # header deadline, connection cap, keep-alive (the body's is the app's)
    )
