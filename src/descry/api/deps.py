"""FastAPI dependency providers; tests replace them through ``app.dependency_overrides``."""

from __future__ import annotations

from fastapi import Request

from descry.api.batches import BatchManager
from descry.api.metrics import ApiMetrics
from descry.api.service import CaptionService
from descry.config import Settings
from descry.engine.pipeline import Engine
from descry.errors import ModelNotReady
from descry.jobs.service import JobService


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def get_metrics(request: Request) -> ApiMetrics:
    metrics: ApiMetrics = request.app.state.metrics
    return metrics


def get_service(request: Request) -> CaptionService:
    service: CaptionService = request.app.state.service
    return service


def get_batches(request: Request) -> BatchManager:
    batches: BatchManager = request.app.state.batches
    return batches


def get_jobs(request: Request) -> JobService:
    jobs: JobService | None = getattr(request.app.state, "jobs", None)
    if jobs is None:
        raise ModelNotReady("durable jobs are not available on this server", hint="install descry[server]")
    return jobs


def get_request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)
