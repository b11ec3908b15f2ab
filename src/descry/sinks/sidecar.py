"""The ``sidecar`` sink: ``photo.jpg`` -> ``photo.txt`` (the caption) or ``photo.json`` (everything)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Literal

from descry import schemas
from descry.fileio import atomic_write
from descry.sinks.files import image_location


def sidecar_content(enrichment: schemas.Enrichment, fmt: Literal["txt", "json"]) -> bytes:
    """The file's bytes: the bare caption (the training-dataset convention) or the enrichment JSON."""
    if fmt == "txt":
        return enrichment.caption.encode("utf-8")
    text = json.dumps(enrichment.model_dump(mode="json"), ensure_ascii=False, indent=2)
    return (text + "\n").encode("utf-8")


class SidecarSink:
    """Writes one sidecar file per image, atomically, beside the image or into ``output_dir``."""

    name = "sidecar"

    def __init__(self, fmt: Literal["txt", "json"] = "txt", output_dir: Path | None = None) -> None:
        self.format = fmt
        self.output_dir = output_dir

    def target(self, ref: schemas.ImageRef) -> Path:
        """Where the sidecar for ``ref`` goes."""
        return image_location(ref, self.output_dir, self.name).with_suffix(f".{self.format}")

    async def deliver(self, enrichment: schemas.Enrichment, ref: schemas.ImageRef) -> None:
        target = self.target(ref)
        await asyncio.to_thread(atomic_write, target, sidecar_content(enrichment, self.format))

    async def close(self) -> None:
        return None
