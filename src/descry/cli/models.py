"""`descry models`: the model presets, or what the local Hugging Face cache holds, as a table or JSON."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer
from rich.console import Console

from descry.cli.console import print_models, print_table
from descry.cli.options import fail
from descry.errors import DescryError


def models(
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    local: Annotated[
        bool,
        typer.Option(
            "--local", help="list the models already in the Hugging Face cache (HF_HOME), their sizes and presets"
        ),
    ] = False,
) -> None:
    """List the model presets: size, what each is good at, CPU use, licence (--local: what is downloaded)."""
    if local:
        try:
            _local(as_json)
        except DescryError as exc:
            raise fail(exc) from None
        return
    rows = preset_rows()
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    print_models(Console(), rows)


def preset_rows() -> list[dict[str, Any]]:
    """Every preset as ``descry models`` shows it (the JSON keeps the numbers, the table the words)."""
    from descry.backends.registry import presets
    from descry.config import DEFAULT_MODEL

    return [
        {
            "name": name,
            "model_id": preset.spec.model_id,
            "backend": preset.spec.backend,
            "default": name == DEFAULT_MODEL,
            "notes": f"{preset.good_at}{'; gated' if preset.gated else ''}" or preset.note,
            "note": preset.note,
            "size": preset.size,
            "params_b": preset.params_b or None,
            "download_gb": preset.download_gb or None,
            "good_at": preset.good_at,
            "cpu": preset.cpu,
            "licence": preset.licence,
            "gated": preset.gated,
            "model_type": preset.model_type,
        }
        for name, preset in presets().items()
    ]


def local_rows() -> tuple[str, list[dict[str, Any]]]:
    """The cache folder and one row per cached model: its presets, size on disk and whether a pull finished."""
    from descry.backends import hub
    from descry.backends.registry import presets

    by_id: dict[str, list[str]] = {}
    for name, preset in presets().items():
        by_id.setdefault(preset.spec.model_id, []).append(name)
    folder, cached = hub.cached_models()
    rows = [
        {
            "model_id": model.model_id,
            "presets": by_id.get(model.model_id, []),
            "size_bytes": model.size,
            "size": hub.human_size(model.size),
            "files": model.files,
            "refs": list(model.refs),
            "complete": None if model.missing is None else model.missing == 0,
            "missing_files": model.missing,
            "last_used": time.strftime("%Y-%m-%d %H:%M", time.localtime(model.last_used)),
            "path": str(model.path),
        }
        for model in cached
    ]
    return str(folder), rows


def _local(as_json: bool) -> None:
    folder, rows = local_rows()
    if as_json:
        print(json.dumps({"cache": folder, "models": rows}, indent=2))
        return
    console = Console(highlight=False, soft_wrap=True)
    if not rows:
        console.print(
            f"no models in the Hugging Face cache ({folder}); `descry pull MODEL` downloads one", markup=False
        )
        return
    header = ("model id", "preset", "size", "files", "status")
    lines = [
        (row["model_id"], ", ".join(row["presets"]) or "-", row["size"], str(row["files"]), _status(row))
        for row in rows
    ]
    print_table(console, header, lines)
    from descry.backends.hub import human_size

    console.print(f"{len(rows)} models, {human_size(sum(r['size_bytes'] for r in rows))} in {folder}", markup=False)


def _status(row: dict[str, Any]) -> str:
    if row["complete"] is None:
        return "downloaded file by file (completeness unknown)"
    if row["complete"]:
        return "complete"
    return f"incomplete: {row['missing_files']} files missing (`descry pull` again)"
