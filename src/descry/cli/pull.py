"""`descry pull`: download a preset or a Hugging Face model into the local Hugging Face cache."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from descry.cli.options import fail
from descry.errors import ConfigError, DescryError, ModelNotFound

if TYPE_CHECKING:
    from descry.backends.hub import RemoteModel


def pull(
    model: Annotated[
        str, typer.Argument(help="a preset (`descry models` lists them) or a Hugging Face id, owner/name")
    ],
    revision: Annotated[
        str | None, typer.Option("--revision", help="a branch, tag or commit of the model repository (default: main)")
    ] = None,
    all_files: Annotated[
        bool,
        typer.Option(
            "--all-files",
            help="fetch every file of the repository, also weights in formats descry does not read (TF, ONNX, GGUF, "
            "PyTorch pickles beside safetensors)",
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="say what would be downloaded and how much, then stop")
    ] = False,
) -> None:
    """Download a model into the Hugging Face cache (HF_HOME), with a progress bar; it says the size first.

    Files already cached are skipped, so an interrupted pull continues where it stopped. HF_TOKEN (or
    `hf auth login`) is used for gated models; HF_HUB_OFFLINE=1 only reports what the cache holds.
    """
    from descry.backends import hub

    out = Console(highlight=False, soft_wrap=True)
    hub.quiet_output(terminal=Console(stderr=True).is_terminal)
    try:
        model_id, label = _model_id(model)
        if hub.offline():
            _offline(out, model_id, label, revision)
            return
        try:
            remote = hub.remote_model(model_id, revision, all_files=all_files)
        except ModelNotFound:
            if hub.reachable() or not hub.cached(model_id, revision):
                raise
            out.print(f"{escape(label)} is in the cache; the hub ({hub.endpoint()}) cannot be reached to check it")
            return
        missing = remote.missing()
        out.print(escape(_plan(label, remote, missing)))
        _warn_unknown_family(out, remote.model_type)
        if not missing:
            out.print(f"already in the cache: {escape(str(hub.snapshot_folder(model_id, remote.commit)))}")
            return
        if dry_run:
            return
        path = hub.download(remote, revision)
        if remote.missing():
            raise ModelNotFound(f"{model_id}: some files did not arrive", hint="run the same command again")
        out.print(f"done: {escape(label)} is in {escape(str(path))} ({hub.human_size(remote.total)})")
    except DescryError as exc:
        raise fail(exc) from None


def _model_id(name: str) -> tuple[str, str]:
    """The hub id a preset or id names, and how to call it in messages (``preset (owner/name)``)."""
    from descry.backends.hf_common import HUB_ID
    from descry.backends.registry import closest_preset, preset_of, presets

    preset = presets().get(name)
    if preset is not None:
        return preset.spec.model_id, f"{name} ({preset.spec.model_id})"
    if Path(name).expanduser().exists():
        raise ConfigError(f"{name} is a local path: there is nothing to pull", hint=f"use it as it is: --model {name}")
    if "/" not in name or not HUB_ID.fullmatch(name):
        close = closest_preset(name)
        raise ModelNotFound(
            f"{name!r} is not a preset or a Hugging Face model id (owner/name)",
            hint=f"{f'did you mean {close}? ' if close else ''}`descry models` lists the presets",
        )
    known = preset_of(name)
    return name, f"{known} ({name})" if known else name


def _plan(label: str, remote: RemoteModel, missing: dict[str, int]) -> str:
    """``preset (id): 4.3 GB in 12 files, 4.3 GB to download`` plus what is left out and gated/licence notes."""
    from descry.backends.hub import human_size as size

    parts = [f"{label}: {size(remote.total)} in {_files(len(remote.files))}"]
    fetch = sum(missing.values())
    if missing and len(missing) < len(remote.files):
        parts.append(f"{size(fetch)} to download ({size(remote.total - fetch)} already cached)")
    elif missing:
        parts.append(f"{size(fetch)} to download")
    if remote.left_out:
        parts.append(
            f"{_files(len(remote.left_out))} in other formats left out ({size(sum(remote.left_out.values()))})"
        )
    if remote.gated:
        parts.append("gated: its licence must be accepted on the model page")
    if remote.licence:
        parts.append(f"licence {remote.licence}")
    return ", ".join(parts)


def _warn_unknown_family(out: Console, model_type: str | None) -> None:
    """A note when no installed backend declares the model's config.json model_type."""
    from descry.backends.registry import catalog

    if model_type and model_type not in catalog().model_types:
        out.print(
            f"note: no descry backend declares model_type {escape(repr(model_type))}; descry will try hf_vlm "
            "(any image-text-to-text model with a chat template), or choose one with --backend"
        )


def _files(n: int) -> str:
    return f"{n} file{'' if n == 1 else 's'}"


def _offline(out: Console, model_id: str, label: str, revision: str | None) -> None:
    """HF_HUB_OFFLINE=1: say whether the cache holds the model; nothing is downloaded."""
    from descry.backends import hub

    if not hub.cached(model_id, revision):
        raise ConfigError(f"HF_HUB_OFFLINE=1 is set, so {label} cannot be downloaded", hint=hub.OFFLINE_HINT)
    out.print(f"{escape(label)} is in the cache; HF_HUB_OFFLINE=1 is set, so it was not checked for updates")
