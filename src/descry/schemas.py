"""Transport-neutral request and result models shared by the API, the CLI and jobs."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Detail = Literal["brief", "detailed"]
# how sinks treat metadata already there (docs/photographers.md): fill only empty fields, replace only
# what descry provably wrote earlier (and fill), overwrite everything descry writes, or leave an image
# that already has a caption alone (without captioning it)
MetadataPolicy = Literal["fill", "replace-machine", "overwrite", "skip"]


class SourceKind(str, Enum):
    upload = "upload"
    path = "path"
    url = "url"
    s3 = "s3"


class ImageRef(BaseModel):
    """Where one image comes from. ``name`` is what errors and outputs call it."""

    model_config = ConfigDict(frozen=True)

    kind: SourceKind
    name: str
    uri: str | None = None
    data: bytes | None = Field(default=None, repr=False, exclude=True)


class GenerationParams(BaseModel):
    """Decoding parameters for one generation; ``None`` means the model preset's default."""

    model_config = ConfigDict(frozen=True)

    max_new_tokens: int | None = Field(default=None, ge=1, le=4096)
    min_new_tokens: int | None = Field(default=None, ge=0, le=4096)
    temperature: float | None = Field(default=None, ge=0.0, le=5.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    num_beams: int | None = Field(default=None, ge=1, le=16)
    repetition_penalty: float | None = Field(default=None, ge=0.5, le=5.0)

    def merged_over(self, base: GenerationParams) -> GenerationParams:
        """These parameters, falling back to ``base`` where unset."""
        data = base.model_dump()
        data.update(self.model_dump(exclude_none=True))
        return GenerationParams(**data)


LANGUAGE_PATTERN = r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$"


class CaptionRequest(BaseModel):
    """What to do with one image: the options every face accepts."""

    prompt: str | None = Field(default=None, max_length=2000)
    detail: Detail = "brief"
    task: str | None = Field(default=None, max_length=64)
    params: GenerationParams = Field(default_factory=GenerationParams)
    tags: bool = True
    max_tags: int | None = Field(default=None, ge=0, le=200, description="None: the server's setting")
    min_tag_score: float | None = Field(default=None, ge=0.0, le=1.0)
    include_tags: list[Annotated[str, Field(max_length=100)]] = Field(
        default_factory=list, max_length=100, description="always added"
    )
    exclude_tags: list[Annotated[str, Field(max_length=100)]] = Field(
        default_factory=list, max_length=500, description="never returned"
    )
    enhance: bool | None = None
    asset_id: str | None = Field(default=None, max_length=512)
    sinks: list[str] | None = None
    language: str | None = Field(
        default=None,
        max_length=35,
        pattern=LANGUAGE_PATTERN,
        description="BCP 47 language of the caption and tags (e.g. de, pt-BR); None: the server's setting",
    )
    policy: MetadataPolicy | None = Field(
        default=None,
        description="metadata already there: fill, replace-machine, overwrite or skip; None: the server's setting",
    )
    dry_run: bool = Field(False, description="caption, then report what each sink would change; write nothing")


class Tag(BaseModel):
    name: str
    source: str
    score: float = 1.0


class Attempt(BaseModel):
    """One try at a caption, as the agent judged it."""

    caption: str
    params: dict[str, Any] = Field(default_factory=dict)
    prompt: str | None = None
    task: str | None = None
    problems: list[str] = Field(default_factory=list)
    output_tokens: int = 0


class ImageInfo(BaseModel):
    width: int
    height: int
    format: str


class Enrichment(BaseModel):
    """The metadata descry produced for one image."""

    name: str
    asset_id: str | None = None
    caption: str
    tags: list[Tag] = Field(default_factory=list)
    source: str
    reasoning_trace: list[str] = Field(default_factory=list)
    attempts: list[Attempt] = Field(default_factory=list)
    chosen_attempt: int = 0
    enhanced: bool = False
    original_caption: str | None = None
    image: ImageInfo | None = None
    task: str | None = None
    structured: dict[str, Any] | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    timings: dict[str, float] = Field(default_factory=dict)
    language: str | None = Field(default=None, description="BCP 47 language of the caption; None: not stated")


class FieldChange(BaseModel):
    """What a sink does (or, in a dry run, would do) to one field of one file."""

    sink: str
    file: str
    field: str
    before: str | None = None
    after: str | None = None
    action: Literal["write", "keep", "same"] = Field(
        description="write: changes; keep: left as it is (a person's text, or the policy); same: already so"
    )


def usable_caption(text: str | None) -> bool:
    """A caption worth writing: it holds at least one letter or digit (not empty, blank or punctuation)."""
    return text is not None and any(ch.isalnum() for ch in text)


class ItemError(BaseModel):
    """Why one image failed, in a form every face can show."""

    name: str
    code: str
    message: str


class JobState(str, Enum):
    queued = "queued"
    running = "running"
    completed = "completed"
    completed_with_errors = "completed_with_errors"
    failed = "failed"
    cancelled = "cancelled"


class JobSpec(BaseModel):
    """A batch of images and what to do with each."""

    request: CaptionRequest = Field(default_factory=CaptionRequest)
    sources: list[str] = Field(default_factory=list)


class JobStatus(BaseModel):
    id: str
    state: JobState
    total: int
    done: int = 0
    failed: int = 0
    created_at: float
    updated_at: float
    message: str | None = None
