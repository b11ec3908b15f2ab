"""What the commands share: the option types of `caption` and `batch`, the settings built from flags, errors."""

from __future__ import annotations

import re
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from descry.cli.console import print_error, stderr_console
from descry.config import ModelSettings, Settings
from descry.errors import ConfigError, DescryError
from descry.schemas import LANGUAGE_PATTERN, Detail, MetadataPolicy

ModelOpt = Annotated[str | None, typer.Option("--model", "-m", help="preset, HF model id or local dir")]
BackendOpt = Annotated[str | None, typer.Option(help="force a backend (hf_vlm, blip, ...)")]
BaseUrlOpt = Annotated[str | None, typer.Option(help="OpenAI-compatible server URL")]
PromptOpt = Annotated[str | None, typer.Option(help="instruction or prefix for the model")]
TaskOpt = Annotated[str | None, typer.Option(help="model task, e.g. <MORE_DETAILED_CAPTION>")]
DetailOpt = Annotated[Detail, typer.Option(help="brief or detailed")]
MaxTokensOpt = Annotated[int | None, typer.Option(min=1, max=4096, help="max new tokens")]
BatchSizeOpt = Annotated[int | None, typer.Option(min=1, max=1024, help="images per device batch")]
DeviceOpt = Annotated[str | None, typer.Option(help="auto, cpu, cuda, cuda:N or mps")]
DtypeOpt = Annotated[str | None, typer.Option(help="auto, float32, bfloat16 or float16")]
RecursiveOpt = Annotated[bool, typer.Option("--recursive/--no-recursive", help="descend into subfolders")]
GlobOpt = Annotated[list[str] | None, typer.Option("--glob", help="file name patterns to include")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")]
PolicyOpt = Annotated[
    MetadataPolicy | None,
    typer.Option(
        help="metadata already there: replace-machine (default: never a person's text), fill (empty fields "
        "only), overwrite, or skip (leave captioned images alone)"
    ),
]
XmpOpt = Annotated[bool, typer.Option("--xmp", help="write XMP metadata: a photo.jpg.xmp sidecar per image")]
EmbedOpt = Annotated[
    bool, typer.Option("--embed", help="write the XMP into JPEG/PNG/TIFF/WebP files themselves (RAW: sidecar)")
]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="print which fields would change, from what to what; write nothing")
]



def _language(value: str | None) -> str | None:
    if value is not None and not re.fullmatch(LANGUAGE_PATTERN, value):
        raise typer.BadParameter("give a BCP 47 language tag such as de, fr or pt-BR")
    return value


LanguageOpt = Annotated[
    str | None,
    typer.Option(
        help="language of captions and tags (BCP 47: de, fr, pt-BR); default: DESCRY_LANGUAGE, else en",
        callback=_language,
    ),
]


def build_settings(**overrides: Any) -> Settings:
    """Settings from the environment and .env, with command-line flags on top."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        settings = Settings()
        model = ModelSettings.model_validate({**settings.model.model_dump(), **given})
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(p) for p in problem["loc"])
        message = f"invalid setting {where}: {problem['msg']}"
        raise ConfigError(message, hint="check the flag or DESCRY_ variable") from exc
    # the CLI runs as the local user, who may read their own LAN and localhost
    sources = settings.sources.model_copy(update={"allow_private_urls": True})
    return settings.model_copy(update={"model": model, "sources": sources})


def metadata_settings(settings: Settings, *, policy: MetadataPolicy | None, embed: bool) -> Settings:
    """``settings`` with ``--policy`` and ``--embed`` on top."""
    update: dict[str, Any] = {}
    if policy is not None:
        update["policy"] = policy
    if embed:
        update["xmp"] = settings.sinks.xmp.model_copy(update={"mode": "embed"})
    if not update:
        return settings
    return settings.model_copy(update={"sinks": settings.sinks.model_copy(update=update)})


def fail(exc: DescryError) -> typer.Exit:
    """Print the error on stderr; the caller raises the returned exit (status 2)."""
    print_error(stderr_console(), exc)
    return typer.Exit(2)
