"""Settings: the single source of configuration.

Built by the CLI or the app factory (``Settings()``), never at import time. Environment
variables use the ``DESCRY_`` prefix with ``__`` for nesting (``DESCRY_MODEL__NAME``), and a
``.env`` file is read too. The environment names of the projects descry replaces are accepted
as aliases with lower priority (see ``LEGACY_ENV``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from descry import schemas
from descry.schemas import MetadataPolicy

DEFAULT_MODEL = "florence-2-base"
CUDA_BATCH_SIZE = 64  # measured on an H200 with a Qwen2.5-VL-7B shape: throughput grows up to 128-256
CPU_BATCH_SIZE = 8


class ModelSettings(BaseModel):
    """Which model to run and how to load it."""

    name: str = Field(DEFAULT_MODEL, description="preset name, Hugging Face model id or local directory")
    backend: str | None = Field(None, description="override the backend the preset or model id implies")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N or mps")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    quantization: Literal["none", "8bit", "4bit"] = "none"
    trust_remote_code: bool | None = None
    revision: str | None = None
    max_new_tokens: int | None = Field(None, ge=1, le=4096)
    prompt: str | None = None
    num_crops: int | None = Field(None, ge=1, le=16)
    compile: bool = Field(False, description="torch.compile the model's forward (CUDA; first batches are slow)")
    attn_implementation: Literal["eager", "sdpa", "flash_attention_2"] | None = Field(
        None, description="unset: flash_attention_2 on CUDA when flash_attn is installed, else sdpa"
    )
    batch_size: int | None = Field(
        None, ge=1, le=1024, description="images per device batch; unset: 64 on CUDA, 8 elsewhere"
    )
    base_url: str | None = Field(None, description="OpenAI-compatible server, e.g. http://localhost:8000/v1")
    api_key: str | None = None
    request_timeout: float = Field(120.0, gt=0)
    max_retries: int = Field(3, ge=0, le=10)
    max_concurrency: int = Field(16, ge=1, le=1024)
    options: dict[str, Any] = Field(
        default_factory=dict,
        description='backend options, checked against the backend (e.g. {"max_pixels": 602112}); '
        "unknown ones are refused",
    )


    def batch_size_for(self, device: str) -> int:
        """The batch size to use on a device: the setting, or a default that suits the device."""
        if self.batch_size:
            return self.batch_size
        return CUDA_BATCH_SIZE if device.startswith("cuda") else CPU_BATCH_SIZE


class ImageLimits(BaseModel):
    """What an input image may be."""

    max_bytes: int = Field(50 * 1024 * 1024, ge=1)
    max_pixels: int = Field(100_000_000, ge=1)
    max_side: int = Field(30_000, ge=1)
    formats: list[str] = Field(
        default_factory=lambda: ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "HEIF", "AVIF", "RAW"],
        description="accepted formats; RAW stands for every camera RAW format (DNG, CR3, NEF, ...)",
    )


class SourceSettings(BaseModel):
    """Where images may be read from."""

    allowed_roots: list[Path] = Field(default_factory=list, description="server paths allowed over the API")
    allow_private_urls: bool = False
    url_allowlist: list[str] = Field(default_factory=list, description="hosts allowed despite private addresses")
    fetch_timeout: float = Field(20.0, gt=0)
    fetch_threads: int = Field(
        16, ge=1, le=256, description="URL and S3 downloads at once, on threads of their own (never decoding's)"
    )
    max_redirects: int = Field(5, ge=0, le=20)
    s3_endpoint_url: str | None = None
    aws_region: str | None = None


class EnhanceSettings(BaseModel):
    """The optional LLM polish (gpt-oss or any chat model behind an OpenAI-compatible API)."""

    enabled: bool = False
    model: str = "openai/gpt-oss-120b"
    base_url: str = "http://localhost:8000/v1"
    api_key: str | None = None
    reasoning_effort: Literal["low", "medium", "high"] = "low"
    timeout: float = Field(30.0, gt=0, description="the most the polish may add to one caption, in seconds")
    max_retries: int = Field(1, ge=0, le=10)
    max_tokens: int = Field(1024, ge=16, le=32768, description="reasoning models spend part of this thinking")


class BatchSettings(BaseModel):
    """Dynamic batching: how requests are grouped onto the device."""

    max_wait_ms: float = Field(10.0, ge=0, le=10_000, description="how long a batch waits to fill up")
    max_queue: int = Field(256, ge=1, description="images waiting for the device before new ones are refused")
    inflight_batches: int = Field(2, ge=1, le=8, description="batches being prepared while one runs")
    adaptive_wait: float = Field(
        0.05,
        ge=0,
        le=0.5,
        description="a partial batch may also wait this share of the last batch's device time (capped at 1 s)",
    )



class AgentSettings(BaseModel):
    """The enrichment agent: judge each caption and retry with changed parameters."""

    enabled: bool = Field(True, description="judge captions and retry; off = one attempt, kept as is")
    max_attempts: int = Field(3, ge=1, le=10)
    min_words: int = Field(5, ge=0, le=200, description="captions with fewer words count as too short")
    language: str | None = Field(
        "en", description="None (empty): no language check; else the check expects the caption language (language)"
    )
    token_floor: int = Field(48, ge=8, le=4096, description="retries for more text ask for at least this")
    max_new_tokens_cap: int = Field(1024, ge=16, le=4096, description="retries never ask for more tokens")
    prefer_words_up_to: int = Field(80, ge=1, description="of equally good attempts, longer wins up to this")


class TagSettings(BaseModel):
    """Tags: taxonomy categories, caption keywords and (optionally) tags asked of the model."""

    enabled: bool = True
    taxonomy_path: Path | None = Field(None, description="YAML file of category: [keywords]")
    taxonomy_mode: Literal["extend", "replace"] = Field("extend", description="extend or replace the default")
    keywords: bool = Field(True, description="add keyword tags taken from the caption")
    model_tags: bool = Field(False, description="also ask instruction-following models for keywords")
    max_tags: int = Field(20, ge=0, le=200)
    min_score: float = Field(0.0, ge=0.0, le=1.0)
    min_length: int = Field(3, ge=1, le=20, description="shortest keyword kept, in characters")
    max_caption_chars: int = Field(1000, ge=50, le=100_000, description="longer captions are truncated first")
    language: str = Field("en", description="superseded by language (DESCRY_LANGUAGE), used when that is unset")


class JobSettings(BaseModel):
    """The durable job queue: where it lives and how workers claim, retry and forget work."""

    database_url: str | None = Field(
        None, description="SQLAlchemy async URL; None means sqlite+aiosqlite:///<data_dir>/descry.db"
    )
    database_schema: str | None = Field(None, description="PostgreSQL schema for descry's tables")
    lease_seconds: float = Field(
        60.0, gt=0, description="how long a claimed image stays owned without a heartbeat"
    )
    max_attempts: int = Field(3, ge=1, le=100)
    backoff_base: float = Field(2.0, ge=0, description="first retry delay in seconds, doubled per attempt")
    backoff_max: float = Field(300.0, ge=0)
    retention_days: float = Field(7.0, gt=0, description="finished jobs older than this are deleted")
    concurrency: int = Field(8, ge=1, le=1024, description="images one worker processes at once")
    poll_interval: float = Field(1.0, gt=0)
    claim_batch: int = Field(8, ge=1, le=1000)
    drain_seconds: float = Field(30.0, ge=0, description="on stop, how long in-flight images may finish")

    def url_for(self, data_dir: Path) -> str:
        """The database URL, defaulting to an SQLite file in ``data_dir``."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(Path(data_dir) / 'descry.db').resolve()}"


class WebhookSettings(BaseModel):
    """The MAM/DAM webhook: where to POST, how to sign, and how hard to retry (through the outbox)."""

    url: str | None = Field(None, description="endpoint that receives one POST per enrichment")
    secret: str | None = Field(None, description="HMAC-SHA256 key for the X-Descry-Signature header")
    headers: dict[str, str] = Field(default_factory=dict, description="extra headers, e.g. Authorization")
    timeout: float = Field(10.0, gt=0, description="seconds per request")
    max_attempts: int = Field(10, ge=1, le=1000, description="then the entry goes to the dead letters")
    backoff_base: float = Field(1.0, ge=0, description="first retry delay in seconds, doubled per attempt")
    max_backoff: float = Field(300.0, ge=0, description="longest delay between two attempts")
    concurrency: int = Field(4, ge=1, le=256, description="assets sent at once (one asset is always in order)")
    flush_on_close: float = Field(5.0, ge=0, description="seconds close() keeps sending what is due")
    keep_delivered_days: float = Field(7.0, ge=0, description="delivered entries older than this are pruned")


class SidecarSettings(BaseModel):
    """Sidecar files: photo.jpg -> photo.txt (caption) or photo.json (the whole enrichment)."""

    format: Literal["txt", "json"] = "txt"
    output_dir: Path | None = Field(None, description="None writes beside the image")


class XmpSettings(BaseModel):
    """XMP/IPTC metadata, embedded in the image or in a .xmp sidecar."""

    mode: Literal["embed", "sidecar"] = Field(
        "sidecar", description="sidecar: a .xmp file beside the image (originals untouched); embed: into the image"
    )
    output_dir: Path | None = Field(None, description="None writes beside the image")
    sidecar_name: Literal["stem", "full"] = Field(
        "full", description="photo.jpg.xmp (full: darktable, digiKam, Immich) or photo.xmp (stem: Lightroom RAW)"
    )


class SinkSettings(BaseModel):
    """Where results are delivered and how each sink behaves."""

    default: list[str] = Field(default_factory=lambda: ["log"], description="sinks used when a request names none")
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)
    sidecar: SidecarSettings = Field(default_factory=SidecarSettings)
    xmp: XmpSettings = Field(default_factory=XmpSettings)
    jsonl_path: Path | None = Field(None, description="None means <data_dir>/enrichments.jsonl")
    policy: MetadataPolicy = Field(
        "replace-machine",
        description="metadata already in a file or sidecar: fill, replace-machine (never a person's text), "
        "overwrite or skip",
    )


Scope = Literal["caption", "jobs", "admin"]
DEFAULT_SCOPES: tuple[Scope, ...] = ("caption", "jobs")


class ApiKey(BaseModel):
    """One API key, stored as the SHA-256 of the key (``descry keys hash`` prints it)."""

    name: str = Field(..., min_length=1, max_length=100, description="who holds the key (logs, rate limits)")
    sha256: str = Field(..., pattern=r"^[0-9a-fA-F]{64}$", description="hex SHA-256 of the key")
    scopes: list[Scope] = Field(default_factory=lambda: list(DEFAULT_SCOPES))


class SecuritySettings(BaseModel):
    """Who may call the API, how often, from where, and how much they may send."""

    api_keys: list[ApiKey] = Field(default_factory=list, description="keys are required once any is set")
    public_health: bool = Field(False, description="serve /health without a key when keys are on")
    public_metrics: bool = Field(False, description="serve /metrics without a key when keys are on")
    key_rate: float = Field(50.0, ge=0, description="requests per second per API key; 0 = unlimited")
    key_burst: int = Field(100, ge=1, description="requests a key may send at once")
    client_rate: float = Field(50.0, ge=0, description="requests per second per client address; 0 = unlimited")
    client_burst: int = Field(100, ge=1, description="requests one address may send at once")
    trusted_proxies: list[str] = Field(
        default_factory=list, description="proxy addresses/CIDRs whose X-Forwarded-For is believed"
    )
    cors_origins: list[str] = Field(default_factory=list, description="empty: no CORS headers at all")
    cors_allow_credentials: bool = False
    max_body_bytes: int = Field(
        128 * 1024 * 1024, ge=1024, description="largest request body; bigger ones get 413 before reading"
    )
    max_files: int = Field(32, ge=1, le=10_000, description="images in one multipart request")
    max_batch_items: int = Field(10_000, ge=1, description="sources in one batch or job")
    max_field_chars: int = Field(4000, ge=16, le=1_000_000, description="longest text form field")


class ServerSettings(BaseModel):
    """The HTTP server (``descry serve``); body limits, CORS and keys live in SecuritySettings."""

    host: str = "0.0.0.0"
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64, description="processes; each one loads its own copy of the model")
    root_path: str = Field("", description="path prefix when served behind a proxy, e.g. /descry")
    batch_concurrency: int = Field(16, ge=1, le=1024, description="images of one batch request in flight at once")
    docs: bool = Field(True, description="serve /docs and /openapi.json")
    graceful_shutdown_s: int = Field(
        30, ge=0, le=3600, description="on SIGTERM, seconds in-flight requests may finish"
    )
    header_timeout_s: float = Field(
        10.0, gt=0, le=3600, description="seconds a connection has to send a request's line and headers, else closed"
    )
    body_timeout_s: float = Field(
        120.0, gt=0, le=86_400, description="seconds to receive a whole request body, else 408"
    )
    keep_alive_s: int = Field(5, ge=1, le=3600, description="an idle keep-alive connection is closed after this")
    max_connections: int = Field(
        1000, ge=1, le=1_000_000, description="open connections per worker process; more are answered 503 and closed"
    )


class CompatSettings(BaseModel):
    """The OpenAI- and Ollama-compatible routes (/v1/chat/completions, /api/chat, /api/generate)."""

    aliases: list[str] = Field(
        default_factory=lambda: ["descry"], description="more model names that mean the loaded model"
    )
    caption_models: list[str] = Field(
        default_factory=lambda: ["descry-caption"],
        description="model names answered with descry's checked caption (tags in an extra field)",
    )
    caption_without_prompt: bool = Field(
        True, description="an image sent with no text of the client's own gets descry's checked caption"
    )


# legacy name -> (section, field)
LEGACY_ENV: dict[str, tuple[str | None, str]] = {
    "VLM_MODEL_ID": ("model", "name"),
    "MAX_TOKENS": ("model", "max_new_tokens"),
    "TEST_MODE": (None, "test_mode"),
    "USE_GPT_OSS": ("enhance", "enabled"),
    "GPT_OSS_MODEL_ID": ("enhance", "model"),
    "GPT_OSS_REASONING_LEVEL": ("enhance", "reasoning_effort"),
    "AWS_REGION": ("sources", "aws_region"),
}


def _legacy_8bit(value: str) -> tuple[str, str, str]:
    on = value.strip().lower() in {"1", "true", "yes", "on"}
    return "model", "quantization", "8bit" if on else "none"


class LegacyEnvSource(PydanticBaseSettingsSource):
    """Reads the seed projects' environment names (e.g. ``MAX_TOKENS``) into nested settings."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for env_name, (section, field) in LEGACY_ENV.items():
            value = os.environ.get(env_name)
            if value is None:
                continue
            if section is None:
                out[field] = value
            else:
                out.setdefault(section, {})[field] = value
        if (flag := os.environ.get("VLM_LOAD_8BIT")) is not None:
            section, field, value = _legacy_8bit(flag)
            out.setdefault(section, {})[field] = value
        return out


def default_data_dir() -> Path:
    """Where descry keeps its state by the platform's convention (Linux: ~/.local/share/descry)."""
    return platformdirs.user_data_path("descry", appauthor=False)


class Settings(BaseSettings):
    """Everything descry can be told. Pass it down; never read the environment elsewhere."""

    model_config = SettingsConfigDict(
        env_prefix="DESCRY_",
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    model: ModelSettings = Field(default_factory=ModelSettings)
    limits: ImageLimits = Field(default_factory=ImageLimits)
    sources: SourceSettings = Field(default_factory=SourceSettings)
    enhance: EnhanceSettings = Field(default_factory=EnhanceSettings)
    jobs: JobSettings = Field(default_factory=JobSettings)
    agent: AgentSettings = Field(default_factory=AgentSettings)
    tags: TagSettings = Field(default_factory=TagSettings)
    batching: BatchSettings = Field(default_factory=BatchSettings)
    sinks: SinkSettings = Field(default_factory=SinkSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    compat: CompatSettings = Field(default_factory=CompatSettings)
    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="job database, outbox and uploads; default: the per-user data directory",
    )
    test_mode: bool = Field(False, description="fewer crops and shorter generations, for fast iteration")
    language: str = Field(
        "en",
        pattern=schemas.LANGUAGE_PATTERN,
        description="BCP 47 language of captions and tags (de, pt-BR); a request's language wins",
    )
    log_level: str = "info"
    decode_threads: int = Field(4, ge=1, le=64)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            dotenv_settings,
            LegacyEnvSource(settings_cls),
            file_secret_settings,
        )
