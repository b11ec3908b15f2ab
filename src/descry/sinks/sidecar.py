"""The ``sidecar`` sink: ``photo.jpg`` -> ``photo.txt`` (the caption) or ``photo.json`` (everything)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from descry.fileio import atomic_write
from descry.schemas import Enrichment, ImageRef
from descry.sinks.files import SidecarFormat, image_location, render_sidecar


class SidecarSink:
    """Writes one sidecar file per image, atomically, beside the image or into ``output_dir``.

    ``roots``: folders whose tree the output directory mirrors (see ``descry.sinks.files``).
    """

    name = "sidecar"

    def __init__(
        self, fmt: SidecarFormat = "txt", output_dir: Path | None = None, roots: Sequence[Path] = ()
    ) -> None:
        self.format: SidecarFormat = fmt
        self.output_dir = output_dir
        self.roots = list(roots)

    def target(self, ref: ImageRef) -> Path:
        """Where the sidecar for ``ref`` goes."""
        return image_location(ref, self.output_dir, self.name, self.roots).with_suffix(f".{self.format}")

    def write(self, enrichment: Enrichment, ref: ImageRef) -> None:
        """Write the sidecar now (blocking)."""
        atomic_write(self.target(ref), render_sidecar(enrichment, self.format))

    async def deliver(self, enrichment: Enrichment, ref: ImageRef) -> None:
        await asyncio.to_thread(self.write, enrichment, ref)

    def done(self, ref: ImageRef) -> bool:
        """The sidecar exists (an image that has no place for one is never done)."""
        try:
            return self.target(ref).exists()
        except Exception:
            return False

    async def close(self) -> None:
        return None
