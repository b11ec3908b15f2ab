"""/v1/jobs: durable batches of uploads, URLs, S3 prefixes or server paths."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, status
from pydantic import BaseModel, Field

from descry.api.bodies import CaptionOptions, JobSources
from descry.api.deps import get_jobs, get_settings
from descry.api.jsonbody import json_model
from descry.api.openapi import either_body
from descry.api.uploads import content_kind, form_fields, open_form, parse_model, read_uploads
from descry.config import Settings
from descry.errors import InputError, PayloadTooLarge
from descry.jobs.inputs import IDEMPOTENCY_KEY_MAX, IDEMPOTENCY_KEY_PATTERN
from descry.jobs.service import JobService
from descry.jobs.store import MAX_PAGE_OFFSET, ItemResult
from descry.schemas import ImageRef, JobStatus
from descry.sources import expand

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
Config = Annotated[Settings, Depends(get_settings)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=IDEMPOTENCY_KEY_MAX,
        pattern=IDEMPOTENCY_KEY_PATTERN,
        description="1-200 visible ASCII characters (inner spaces allowed); a retry with the same key"
        " returns the same job. An empty or blank key is refused (422), not read as no key.",
    ),
]
Offset = Annotated[int, Query(ge=0, le=MAX_PAGE_OFFSET, description="results to skip, in submission order")]
PageLimit = Annotated[int, Query(ge=1, le=1000, description="results in this page")]


Jobs = Annotated[JobService, Depends(get_jobs)]


class JobResults(BaseModel):
    job_id: str
    offset: int
    limit: int
    items: list[ItemResult]


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
        body = await json_model(request, JobSources)
        others = await asyncio.to_thread(expand, body.sources, settings=settings.sources, untrusted=True)
        options: CaptionOptions = body
    else:
        async with open_form(request, settings) as form:
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
    offset: Offset = 0,
    limit: PageLimit = 100,
) -> JobResults:
    await jobs.store.get_job(job_id)
    items = await jobs.store.results(job_id, offset=offset, limit=limit)
    return JobResults(job_id=job_id, offset=offset, limit=limit, items=items)


@router.delete("/{job_id}", response_model=JobStatus, summary="Cancel a job")
async def cancel_job(job_id: str, jobs: Jobs) -> JobStatus:
    return await jobs.store.cancel(job_id)
