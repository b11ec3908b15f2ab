"""Request and response bodies of the HTTP API (the transport-neutral ones live in descry.schemas)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer, model_validator

from descry.schemas import (
    LANGUAGE_PATTERN,
    CaptionRequest,
    Detail,
    Enrichment,
    FieldChange,
    GenerationParams,
    ImageInfo,
    ImageRef,
    MetadataPolicy,
    SourceKind,
    Tag,
)


class CaptionOptions(BaseModel):
    """What to do with an image; every field is optional."""

    model_config = ConfigDict(extra="forbid")

    prompt: str | None = Field(None, max_length=2000, description="instruction for instruct models")
    detail: Detail = Field("brief", description="brief or detailed")
    max_tokens: int | None = Field(None, ge=1, le=4096, description="max new tokens (overrides params)")
    task: str | None = Field(None, max_length=64, description="model task, e.g. <MORE_DETAILED_CAPTION>")
    tags: bool = Field(True, description="add tags")
    enhance: bool | None = Field(None, description="polish with the LLM; null: the server's setting")
    language: str | None = Field(
        None,
        max_length=35,
        pattern=LANGUAGE_PATTERN,
        description="BCP 47 language of the caption and tags (de, pt-BR); null: the server's setting",
    )
    asset_id: str | None = Field(None, max_length=512, description="the asset's id in your MAM/DAM")
    sinks: list[str] | None = Field(
        None,
        description="deliver to these sinks (unknown: 400); null: the default sinks for a job or when asset_id "
        "is set, else none",
    )
    params: GenerationParams = Field(default_factory=GenerationParams)
    policy: MetadataPolicy | None = Field(
        None, description="metadata already there: fill, replace-machine, overwrite or skip; null: the server's"
    )
    dry_run: bool = Field(False, description="report in `changes` what each sink would change; write nothing")

    def to_request(self) -> CaptionRequest:
        params = self.params
        if self.max_tokens is not None:
            params = params.model_copy(update={"max_new_tokens": self.max_tokens})
        return CaptionRequest(
            prompt=self.prompt,
            detail=self.detail,
            task=self.task,
            params=params,
            tags=self.tags,
            enhance=self.enhance,
            language=self.language,
            asset_id=self.asset_id,
            sinks=self.sinks,
            policy=self.policy,
            dry_run=self.dry_run,
        )


def source_ref(url: str | None, s3_uri: str | None, path: str | None) -> ImageRef:
    """The ImageRef for exactly one of url, s3_uri and path."""
    if url:
        return ImageRef(kind=SourceKind.url, name=url, uri=url)
    if s3_uri:
        return ImageRef(kind=SourceKind.s3, name=s3_uri, uri=s3_uri)
    assert path
    return ImageRef(kind=SourceKind.path, name=path, uri=path)


def _exactly_one(url: str | None, s3_uri: str | None, path: str | None) -> None:
    given = [name for name, value in (("url", url), ("s3_uri", s3_uri), ("path", path)) if value]
    if len(given) != 1:
        found = ", ".join(given) if given else "none"
        raise ValueError(f"give exactly one of url, s3_uri or path (got {found})")


class CaptionSource(CaptionOptions):
    """An image the server fetches (http(s) URL, s3:// URI or a path under an allowed root) plus options."""

    url: str | None = Field(None, max_length=8192)
    s3_uri: str | None = Field(None, max_length=2048)
    path: str | None = Field(None, max_length=4096)

    @model_validator(mode="after")
    def _one_source(self) -> CaptionSource:
        _exactly_one(self.url, self.s3_uri, self.path)
        return self

    def ref(self) -> ImageRef:
        return source_ref(self.url, self.s3_uri, self.path)


class BatchSources(BaseModel):
    """A JSON batch: each item names its own source and options."""

    model_config = ConfigDict(extra="forbid")

    items: list[CaptionSource] = Field(..., min_length=1)


class JobSources(CaptionOptions):
    """A job of images the server reads: http(s) URLs, s3:// objects or prefixes, paths under allowed roots."""

    model_config = ConfigDict(extra="forbid")

    sources: list[Annotated[str, Field(max_length=8192)]] = Field(..., min_length=1)


class ErrorDetail(BaseModel):
    code: str
    message: str


class CaptionResponse(BaseModel):
    """One enriched image."""

    name: str
    asset_id: str | None = None
    caption: str
    tags: list[Tag]
    source: str = Field(description="the model that wrote the caption")
    model: str
    backend: str
    task: str | None = None
    params: dict[str, Any]
    structured: dict[str, Any] | None = Field(None, description="task output such as <OD> boxes")
    reasoning_trace: list[str]
    attempts: int = Field(description="how many captions the agent generated")
    enhanced: bool
    original_caption: str | None = None
    language: str | None = Field(None, description="BCP 47 language of the caption")
    image: ImageInfo | None = None
    timings: dict[str, float]
    delivery: dict[str, str | None] | None = Field(
        None, description="sink -> error message, or null when delivered"
    )
    changes: list[FieldChange] | None = Field(None, description="dry_run: what each sink would change, per field")
    request_id: str | None = None

    @classmethod
    def build(
        cls,
        enrichment: Enrichment,
        *,
        backend: str,
        request_id: str | None,
        delivery: dict[str, str | None] | None,
        changes: list[FieldChange] | None = None,
    ) -> CaptionResponse:
        return cls(
            name=enrichment.name,
            asset_id=enrichment.asset_id,
            caption=enrichment.caption,
            tags=enrichment.tags,
            source=enrichment.source,
            model=enrichment.source,
            backend=backend,
            task=enrichment.task,
            params=enrichment.params,
            structured=enrichment.structured,
            reasoning_trace=enrichment.reasoning_trace,
            attempts=len(enrichment.attempts),
            enhanced=enrichment.enhanced,
            original_caption=enrichment.original_caption,
            language=enrichment.language,
            image=enrichment.image,
            timings=enrichment.timings,
            delivery=delivery if delivery else None,
            changes=changes,
            request_id=request_id,
        )


class BatchItemResult(BaseModel):
    index: int
    name: str
    ok: bool
    result: CaptionResponse | None = None
    error: ErrorDetail | None = None


class BatchResponse(BaseModel):
    results: list[BatchItemResult]
    total: int
    succeeded: int
    failed: int
    seconds: float
    request_id: str | None = None


class PresetInfo(BaseModel):
    name: str
    model_id: str
    backend: str
    default: bool
    notes: str


class LoadedModel(BaseModel):
    name: str
    backend: str
    device: str
    status: str
    error: str | None = None
    load_seconds: float | None = None
    capabilities: dict[str, Any]
    default_prompt: str | None = None
    default_task: str | None = None


class OpenAIModel(BaseModel):
    """One entry of OpenAI's model list (``GET /v1/models`` answers the OpenAI SDKs too)."""

    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "descry"


class ModelsResponse(BaseModel):
    model: LoadedModel
    presets: list[PresetInfo]
    object: Literal["list"] = "list"
    data: list[OpenAIModel] = Field(
        default_factory=list, description="the model names /v1/chat/completions answers to (OpenAI's list)"
    )


class HealthResponse(BaseModel):
    status: Literal["ok", "loading", "failed", "stopped"]
    ok: bool
    backend: str
    device: str
    dtype: str | None = None  # the loaded model's arithmetic (bfloat16, float32, ...); None before it loads
    model: str
    model_status: str
    load_seconds: float | None = None
    error: str | None = None
    error_code: str | None = None
    gpt_oss_enabled: bool
    gpt_oss_model: str
    gpt_oss_reasoning_level: str


# seed-compatible bodies -----------------------------------------------------------


class InferResponse(BaseModel):
    caption: str


class EnrichResponse(BaseModel):
    caption: str
    tags: list[str]
    source: str
    reasoning_trace: list[str]
    asset_id: str | None = None
    delivery: dict[str, str | None] = Field(default_factory=dict)


class SeedCaptionJSON(BaseModel):
    """The seed's JSON caption request: an S3 object or URL, optionally detailed and polished."""

    s3_uri: str | None = Field(None, max_length=2048)
    url: str | None = Field(None, max_length=8192)
    detailed: bool = False
    use_gpt_oss: bool | None = Field(None, description="polish with gpt-oss; null: the server's setting")

    @model_validator(mode="after")
    def _one_source(self) -> SeedCaptionJSON:
        _exactly_one(self.url, self.s3_uri, None)
        return self


class SeedUploadCaption(BaseModel):
    filename: str
    caption: str
    tags: list[str]
    processing_time: float


class SeedSourceCaption(BaseModel):
    caption: str
    enhanced: bool
    s3_uri: str | None = None
    original_caption: str | None = None


class SeedBatchItem(BaseModel):
    """The seeds' ``{image_path, caption, tags}``; a failed image has ``caption`` null and an ``error``."""

    image_path: str
    caption: str | None = None
    tags: list[str] = Field(default_factory=list)
    error: ErrorDetail | None = None

    @model_serializer(mode="wrap")
    def _seed_shape(self, handler: SerializerFunctionWrapHandler):  # type: ignore[no-untyped-def]
        # no return annotation: it would replace the model's schema in the OpenAPI document
        data = handler(self)
        if isinstance(data, dict) and data.get("error") is None:
            data.pop("error", None)
        return data


class SeedBatchResponse(BaseModel):
    results: list[SeedBatchItem]
    total_processing_time: float


class AsyncSubmitted(BaseModel):
    message: str
    task_id: str


class BatchProgress(BaseModel):
    total: int
    done: int
    failed: int


class AsyncBatchStatus(BaseModel):
    """The BLIP service's status shape: ``result`` is the list of items once the batch has finished."""

    task_id: str
    status: Literal["pending", "processing", "completed", "failed"]
    message: str
    result: list[SeedBatchItem] | None = None
    progress: BatchProgress
