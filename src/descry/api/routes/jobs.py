"""/v1/jobs: durable batches of uploads, URLs, S3 prefixes or server paths."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field

from descry.api.deps import get_jobs, get_settings
from descry.api.models import CaptionOptions
from descry.api.openapi import either_body
from descry.api.uploads import content_kind, form_fields, json_body, parse_model, read_uploads
from descry.config import Settings
from descry.errors import InputError, PayloadTooLarge
from descry.jobs.service import JobService
from descry.jobs.store import ItemResult
from descry.schemas import ImageRef, JobStatus, SourceKind
from descry.sources import check_server_path, expand_s3, is_s3, is_url, parse_s3, path_ref, walk_directory

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
Config = Annotated[Settings, Depends(get_settings)]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)]


Jobs = Annotated[JobService, Depends(get_jobs)]


class JobSources(CaptionOptions):
    """A job of images the server reads: http(s) URLs, s3:// objects or prefixes, paths under allowed roots."""

    model_config = ConfigDict(extra="forbid")

    sources: list[Annotated[str, Field(max_length=8192)]] = Field(..., min_length=1)


class JobResults(BaseModel):
    job_id: str
    offset: int
    limit: int
    items: list[ItemResult]


def resolve_sources(sources: list[str], settings: Settings) -> list[ImageRef]:
    """Turn a job's source strings into refs; server paths must lie inside the allowed roots."""
    refs: list[ImageRef] = []
    for source in sources:
        if is_url(source):
            refs.append(ImageRef(kind=SourceKind.url, name=source, uri=source))
        elif is_s3(source):
            parse_s3(source)
            refs.extend(expand_s3(source, settings.sources))
        else:
            refs.extend(_server_path(source, settings))
    return refs


def _server_path(source: str, settings: Settings) -> list[ImageRef]:
    """A file, or every image in a folder, under the allowed roots (symlinks out of them are skipped)."""
    roots = [Path(r).expanduser().resolve() for r in settings.sources.allowed_roots]
    candidate = Path(source)
    if roots and not candidate.is_absolute():
        candidate = roots[0] / candidate
    try:
        is_folder = bool(roots) and candidate.is_dir()
    except OSError as exc:  # e.g. a name longer than the filesystem allows
        raise InputError(f"the path cannot be used ({exc.strerror})", source=source[:200]) from exc
    if is_folder:
        folder = candidate.resolve()
        if any(folder == r or folder.is_relative_to(r) for r in roots):
            return [path_ref(p) for p in walk_directory(folder) if any(p.resolve().is_relative_to(r) for r in roots)]
    return [path_ref(check_server_path(source, settings.sources.allowed_roots))]


@router.post(
    "",
    response_model=JobStatus,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Submit a durable job; answered once every image is stored",
    openapi_extra=either_body("BatchUpload", "JobSources"),
)
async def submit_job(
    request: Request, jobs: Jobs, settings: Config, idempotency_key: IdempotencyKey = None
) -> JobStatus:
    """Multipart `files` parts with option fields, or JSON `{"sources": [...], ...options}`. An
    `Idempotency-Key` header makes a retried submission return the same job."""
    uploads: list[ImageRef] = []
    others: list[ImageRef] = []
    if content_kind(request) == "json":
        body = parse_model(JobSources, await json_body(request))
        others = await asyncio.to_thread(resolve_sources, body.sources, settings)
        options: CaptionOptions = body
    else:
        async with request.form() as form:
            uploads = await read_uploads(form.getlist("files"), settings)
            options = parse_model(CaptionOptions, form_fields(form, CaptionOptions, skip={"files"}))
    total = len(uploads) + len(others)
    if total == 0:
        raise InputError("the job has no images", hint="send files, or sources that contain images")
    limit = settings.security.max_batch_items
    if total > limit:
        raise PayloadTooLarge(
            f"{total} images in one job; the limit is {limit}",
            hint="split the job or raise DESCRY_SECURITY__MAX_BATCH_ITEMS",
        )
    job_id = await jobs.submit(options.to_request(), uploads, others, idempotency_key=idempotency_key)
    return await jobs.store.get_job(job_id)


@router.get("", response_model=list[JobStatus], summary="The newest jobs")
async def list_jobs(jobs: Jobs, limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> list[JobStatus]:
    return await jobs.store.list_jobs(limit=limit)


@router.get("/{job_id}", response_model=JobStatus, summary="A job's state and progress")
async def get_job(job_id: Annotated[str, Field(max_length=64)], jobs: Jobs) -> JobStatus:
    return await jobs.store.get_job(job_id)


@router.get("/{job_id}/results", response_model=JobResults, summary="A page of results, in submission order")
async def job_results(
    job_id: str,
    jobs: Jobs,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> JobResults:
    await jobs.store.get_job(job_id)
    items = await jobs.store.results(job_id, offset=offset, limit=limit)
    return JobResults(job_id=job_id, offset=offset, limit=limit, items=items)


@router.delete("/{job_id}", response_model=JobStatus, summary="Cancel a job")
async def cancel_job(job_id: str, jobs: Jobs) -> JobStatus:
    return await jobs.store.cancel(job_id)
