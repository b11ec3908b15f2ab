"""`descry models`: the model presets, as a table or JSON."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console

from descry.cli.console import print_models


def models(as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> None:
    """List the model presets."""
    from descry.backends.registry import PRESET_NOTES, PRESETS
    from descry.config import DEFAULT_MODEL

    rows = [
        {
            "name": name,
            "model_id": spec.model_id,
            "backend": spec.backend,
            "default": name == DEFAULT_MODEL,
            "notes": PRESET_NOTES.get(name, ""),
        }
        for name, spec in PRESETS.items()
    ]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    print_models(Console(), rows)
