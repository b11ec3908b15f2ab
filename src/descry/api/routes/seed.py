"""Routes with the paths, fields and shapes of the services descry replaces."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile, status

from descry.api.batches import BatchManager, seed_item
from descry.api.bodies import (
    AsyncBatchStatus,
    AsyncSubmitted,
    EnrichResponse,
    InferResponse,
    SeedBatchResponse,
    SeedCaptionJSON,
    SeedSourceCaption,
    SeedUploadCaption,
    source_ref,
)
from descry.api.deps import get_batches, get_service, get_settings
from descry.api.jsonbody import json_model
from descry.api.openapi import either_body
from descry.api.security import require_scope
from descry.api.service import CaptionService
from descry.api.uploads import (
    FormRoute,
    content_kind,
    open_form,
    read_single_upload,
    read_upload,
    read_uploads,
)
from descry.config import Settings
from descry.errors import InputError, NotFound
from descry.schemas import CaptionRequest

router = APIRouter(tags=["seed-compatible"], route_class=FormRoute)

Service = Annotated[CaptionService, Depends(get_service)]
Config = Annotated[Settings, Depends(get_settings)]
Upload = Annotated[UploadFile, File(description="the image")]
Uploads = Annotated[list[UploadFile], File(description="the images")]


@router.post("/infer", response_model=InferResponse, summary="Caption one uploaded image")
async def infer(file: Upload, service: Service, settings: Config) -> InferResponse:
    ref = await read_upload(file, settings.limits.max_bytes)
    done = await service.caption(ref, CaptionRequest(tags=False), deliver=[])
    return InferResponse(caption=done.enrichment.caption)


@router.post(
    "/api/enrich", response_model=EnrichResponse, summary="Enrich one image and push it to the MAM sinks"
)
async def enrich(
    file: Upload,
    service: Service,
    settings: Config,
    asset_id: Annotated[str | None, Form(max_length=512, description="the asset's id in the MAM")] = None,
) -> EnrichResponse:
    """Caption, tags and reasoning trace; the result is delivered to the default sinks
    (`DESCRY_SINKS__DEFAULT`, the `log` sink prints `[MAM] Updated asset ...`): this route's reply
    is a delivery report, so the one rule gives it the defaults with or without an asset id."""
    ref = await read_upload(file, settings.limits.max_bytes)
    sinks = service.sinks.names_for(None, asset_id=asset_id, in_reply=False)
    done = await service.caption(ref, CaptionRequest(asset_id=asset_id), deliver=sinks)
    enrichment = done.enrichment
    return EnrichResponse(
        caption=enrichment.caption,
        tags=[tag.name for tag in enrichment.tags],
        source=enrichment.source,
        reasoning_trace=enrichment.reasoning_trace,
        asset_id=asset_id,
        delivery=done.delivery,
    )


def _flag(value: Any) -> bool | None:
    if value is None or value == "":
        return None
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise InputError(f"{value!r} is not a boolean", hint="use true or false")


@router.post(
    "/caption",
    summary="Caption an uploaded file, or an S3 object / URL given as JSON",
    response_model=SeedUploadCaption | SeedSourceCaption,
    response_model_exclude_unset=True,
    openapi_extra=either_body("SeedCaptionUpload", "SeedCaptionJSON"),
)
async def caption(
    request: Request, service: Service, settings: Config
) -> SeedUploadCaption | SeedSourceCaption:
    """Multipart `file` → `{filename, caption, tags, processing_time}`; JSON `{s3_uri | url, detailed,
    use_gpt_oss}` → `{caption, enhanced, s3_uri}` plus `original_caption` when the caption was polished."""
    if content_kind(request) == "json":
        body = await json_model(request, SeedCaptionJSON)
        caption_request = CaptionRequest(
            detail="detailed" if body.detailed else "brief", enhance=body.use_gpt_oss
        )
        done = await service.caption(source_ref(body.url, body.s3_uri, None), caption_request, deliver=[])
        enrichment = done.enrichment
        answer = SeedSourceCaption(
            caption=enrichment.caption, enhanced=enrichment.enhanced, s3_uri=body.s3_uri
        )
        if enrichment.enhanced:
            answer.original_caption = enrichment.original_caption
        return answer
    started = time.perf_counter()
    async with open_form(request, settings) as form:
        ref = await read_single_upload(form, settings)
        detailed, enhance = _flag(form.get("detailed")), _flag(form.get("use_gpt_oss"))
    caption_request = CaptionRequest(detail="detailed" if detailed else "brief", enhance=enhance)
    done = await service.caption(ref, caption_request, deliver=[])
    return SeedUploadCaption(
        filename=ref.name,
        caption=done.enrichment.caption,
        tags=[tag.name for tag in done.enrichment.tags],
        processing_time=round(time.perf_counter() - started, 4),
    )


@router.post("/batch-caption", response_model=SeedBatchResponse, summary="Caption several uploaded images")
async def batch_caption(files: Uploads, service: Service, settings: Config) -> SeedBatchResponse:
    """One result per file, in order; a bad file gets an `error` instead of a caption."""
    started = time.perf_counter()
    refs = await read_uploads(files, settings)
    request = CaptionRequest()
    outcomes = await service.caption_many([(ref, request) for ref in refs])
    return SeedBatchResponse(
        results=[seed_item(ref.name, outcome) for ref, outcome in zip(refs, outcomes, strict=True)],
        total_processing_time=round(time.perf_counter() - started, 4),
    )


@router.post(
    "/async-batch-caption",
    response_model=AsyncSubmitted,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Queue several uploaded images; poll the status route for the results",
    dependencies=[Depends(require_scope("jobs"))],
)
async def async_batch_caption(
    files: Uploads, settings: Config, batches: Annotated[BatchManager, Depends(get_batches)]
) -> AsyncSubmitted:
    """Answers once the files are saved on the server; processing continues in the background."""
    refs = await read_uploads(files, settings)
    task_id = await batches.submit(refs, CaptionRequest())
    return AsyncSubmitted(message=f"Batch of {len(refs)} images accepted for processing", task_id=task_id)


@router.get(
    "/async-batch-caption/status/{task_id}",
    response_model=AsyncBatchStatus,
    summary="Progress and, once finished, the results of an async batch",
    dependencies=[Depends(require_scope("jobs"))],
)
async def async_batch_status(
    task_id: str, batches: Annotated[BatchManager, Depends(get_batches)]
) -> AsyncBatchStatus:
    found = await batches.status(task_id)
    if found is None:
        raise NotFound(
            f"no batch with id {task_id!r}", hint="use the task_id returned by POST /async-batch-caption"
        )
    return found
