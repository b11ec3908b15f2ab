"""The canonical API: /v1/caption, /v1/caption/batch and /v1/models."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Request

from descry.api.bodies import (
    BatchItemResult,
    BatchResponse,
    BatchSources,
    CaptionOptions,
    CaptionResponse,
    CaptionSource,
    ErrorDetail,
    LoadedModel,
    ModelsResponse,
    OpenAIModel,
    PresetInfo,
)
from descry.api.chat import served_names
from descry.api.deps import get_engine, get_request_id, get_service, get_settings
from descry.api.jsonbody import json_model
from descry.api.openapi import either_body
from descry.api.service import CaptionService
from descry.api.uploads import (
    content_kind,
    form_fields,
    open_form,
    parse_model,
    read_single_upload,
    read_uploads,
)
from descry.config import Settings
from descry.engine.pipeline import Engine
from descry.errors import PayloadTooLarge
from descry.schemas import CaptionRequest, ImageRef, ItemError

router = APIRouter(prefix="/v1", tags=["v1"])

Service = Annotated[CaptionService, Depends(get_service)]
Config = Annotated[Settings, Depends(get_settings)]
RequestId = Annotated[str | None, Depends(get_request_id)]


@router.post(
    "/caption",
    response_model=CaptionResponse,
    summary="Caption and tag one image",
    openapi_extra=either_body("CaptionUpload", "CaptionSource"),
)
async def caption(
    request: Request, service: Service, settings: Config, request_id: RequestId
) -> CaptionResponse:
    """Send the image as a multipart `file` part with optional option fields, or JSON naming a `url`,
    `s3_uri` or `path` (inside an allowed root) with the same options."""
    if content_kind(request) == "json":
        source = await json_model(request, CaptionSource)
        ref, caption_request = source.ref(), source.to_request()
    else:
        async with open_form(request, settings) as form:
            ref = await read_single_upload(
                form, settings, hint="send it with curl -F 'file=@photo.jpg'; for several images use /v1/caption/batch"
            )
            options = parse_model(CaptionOptions, form_fields(form, CaptionOptions, skip={"file"}))
            caption_request = options.to_request()
    done = await service.caption(ref, caption_request)
    backend = service.backend_name
    return CaptionResponse.build(
        done.enrichment, backend=backend, request_id=request_id, delivery=done.delivery, changes=done.changes
    )


async def _batch_items(request: Request, settings: Settings) -> list[tuple[ImageRef, CaptionRequest]]:
    if content_kind(request) == "json":
        body = await json_model(request, BatchSources)
        limit = settings.security.max_batch_items
        if len(body.items) > limit:
            raise PayloadTooLarge(
                f"{len(body.items)} items in one batch; the limit is {limit}",
                hint="split the batch or raise DESCRY_SECURITY__MAX_BATCH_ITEMS",
            )
        return [(item.ref(), item.to_request()) for item in body.items]
    async with open_form(request, settings) as form:
        files = form.getlist("files")
        refs = await read_uploads(files, settings)
        options = parse_model(CaptionOptions, form_fields(form, CaptionOptions, skip={"files"}))
    caption_request = options.to_request()
    return [(ref, caption_request) for ref in refs]


@router.post(
    "/caption/batch",
    response_model=BatchResponse,
    summary="Caption several images; one result or error per image, in order",
    openapi_extra=either_body("BatchUpload", "BatchSources"),
)
async def caption_batch(
    request: Request, service: Service, settings: Config, request_id: RequestId
) -> BatchResponse:
    """Multipart `files` parts (shared option fields), or JSON `{"items": [...]}` where each item names
    its own source and options. The images share device batches; one bad image fails only itself."""
    items = await _batch_items(request, settings)
    for _ref, item_request in items:  # an unknown sink is refused before any image is captioned
        service.sinks.names_for(item_request.sinks, asset_id=item_request.asset_id)
    started = time.perf_counter()
    outcomes = await service.caption_many(items)
    results = []
    for index, ((ref, _req), outcome) in enumerate(zip(items, outcomes, strict=True)):
        if isinstance(outcome, ItemError):
            error = ErrorDetail(code=outcome.code, message=outcome.message)
            results.append(BatchItemResult(index=index, name=ref.name, ok=False, error=error))
        else:
            result = CaptionResponse.build(
                outcome.enrichment,
                backend=service.backend_name,
                request_id=request_id,
                delivery=outcome.delivery,
                changes=outcome.changes,
            )
            results.append(BatchItemResult(index=index, name=ref.name, ok=True, result=result))
    failed = sum(1 for r in results if not r.ok)
    return BatchResponse(
        results=results,
        total=len(results),
        succeeded=len(results) - failed,
        failed=failed,
        seconds=round(time.perf_counter() - started, 4),
        request_id=request_id,
    )


@router.get("/models", response_model=ModelsResponse, summary="The loaded model and the available presets")
async def models(engine: Annotated[Engine, Depends(get_engine)], settings: Config) -> ModelsResponse:
    from descry.backends.registry import PRESET_NOTES, PRESETS
    from descry.config import DEFAULT_MODEL

    backend = engine.backend
    caps = backend.capabilities
    loaded = LoadedModel(
        name=backend.model_name,
        backend=backend.name,
        device=str(backend.device),
        status=engine.state.status,
        error=engine.state.error,
        load_seconds=engine.state.load_seconds,
        capabilities={
            "instruct": caps.instruct,
            "prompt": caps.prompt,
            "tasks": sorted(caps.tasks),
            "batching": caps.batching,
            "structured_output": caps.structured_output,
        },
        default_prompt=backend.spec.default_prompt,
        default_task=backend.spec.default_task or caps.default_task,
    )
    presets = [
        PresetInfo(
            name=name,
            model_id=spec.model_id,
            backend=spec.backend,
            default=name == DEFAULT_MODEL,
            notes=PRESET_NOTES.get(name, ""),
        )
        for name, spec in PRESETS.items()
    ]
    served = [OpenAIModel(id=name) for name in served_names(settings, backend.model_name)]
    return ModelsResponse(model=loaded, presets=presets, data=served)
