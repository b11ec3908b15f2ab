"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from descry.api.bodies import HealthResponse
from descry.api.deps import get_engine, get_metrics, get_settings
from descry.api.metrics import CONTENT_TYPE_LATEST, ApiMetrics
from descry.api.security import require_scope
from descry.backends.precision import dtype_name
from descry.config import Settings
from descry.engine.pipeline import Engine
from descry.errors import ModelNotReady

router = APIRouter(tags=["health"])
HEALTH_ACCESS = [Depends(require_scope("caption", public="health"))]
METRICS_ACCESS = [Depends(require_scope("admin", public="metrics"))]

HEALTH_STATUS = {"ready": "ok", "loading": "loading", "failed": "failed", "stopped": "stopped"}


def health_of(engine: Engine, settings: Settings) -> HealthResponse:
    state = engine.state
    return HealthResponse(
        status=HEALTH_STATUS.get(state.status, "stopped"),  # type: ignore[arg-type]
        ok=engine.ready,
        backend=engine.backend.name,
        device=str(engine.backend.device),
        dtype=dtype_name(getattr(engine.backend, "dtype", None)),
        model=engine.backend.model_name,
        model_status=state.status,
        load_seconds=state.load_seconds,
        error=state.error,
        error_code=state.error_code,
        gpt_oss_enabled=settings.enhance.enabled,
        gpt_oss_model=settings.enhance.model,
        gpt_oss_reasoning_level=settings.enhance.reasoning_effort,
    )


@router.get(
    "/health",
    dependencies=HEALTH_ACCESS,
    response_model=HealthResponse,
    summary="Liveness and model status (always 200)",
)
async def health(
    engine: Annotated[Engine, Depends(get_engine)], settings: Annotated[Settings, Depends(get_settings)]
) -> HealthResponse:
    """`status` is `loading` while the model loads, `ok` once it serves, `failed` (with `error`)
    when it could not load."""
    return health_of(engine, settings)


@router.get(
    "/ready",
    dependencies=HEALTH_ACCESS,
    response_model=HealthResponse,
    summary="Readiness: 200 once the model is loaded, else 503",
)
async def ready(
    engine: Annotated[Engine, Depends(get_engine)], settings: Annotated[Settings, Depends(get_settings)]
) -> HealthResponse:
    if not engine.ready:
        if engine.state.status == "failed":
            raise engine.state.load_failure()
        raise ModelNotReady(f"the model is {engine.state.status}", hint="retry when it has loaded")
    return health_of(engine, settings)


@router.get("/metrics", dependencies=METRICS_ACCESS, summary="Prometheus metrics", response_class=Response)
async def metrics(
    engine: Annotated[Engine, Depends(get_engine)], registry: Annotated[ApiMetrics, Depends(get_metrics)]
) -> Response:
    registry.model_state(engine.ready, engine.state.load_seconds)
    return Response(registry.render(), media_type=CONTENT_TYPE_LATEST)
