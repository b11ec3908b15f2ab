"""Where the CLI writes results: sidecars beside images or in a folder, or one JSONL stream.

Every file is written atomically (a temporary file in the same folder, then a rename), so an
interruption never leaves a half-written output.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Literal

from descry.fileio import atomic_write, output_error
from descry.schemas import Enrichment, ImageRef, SourceKind

OutputFormat = Literal["txt", "json", "jsonl"]


def atomic_write_text(path: Path, text: str) -> None:
    """Write text to path all at once or not at all."""
    atomic_write(path, text.encode("utf-8"))


def render(enrichment: Enrichment, fmt: OutputFormat) -> str:
    if fmt == "txt":
        return enrichment.caption.strip() + "\n"
    return enrichment.model_dump_json(indent=None if fmt == "jsonl" else 2, exclude_none=True) + "\n"


class OutputPlan:
    """Decides each image's output file, before any model work, so existing ones can be skipped."""

    def __init__(self, fmt: OutputFormat, output: Path | None, roots: list[Path] | None = None) -> None:
        self.fmt = fmt
        self.output = output
        self.roots = [r.resolve() for r in roots or []]
        self._done_names: set[str] | None = None

    def sidecar_path(self, ref: ImageRef) -> Path | None:
        """The sidecar for an image, or None when results go to stdout or a JSONL file."""
        if self.fmt == "jsonl":
            return None
        suffix = "." + self.fmt
        if ref.kind is SourceKind.path:
            source = Path(ref.uri or ref.name)
            if self.output is None:
                return source.with_suffix(suffix)
            return (self.output / self._relative(source)).with_suffix(suffix)
        if self.output is None:
            return None
        stem = ref.name.rstrip("/").rsplit("/", 1)[-1] or "image"
        return (self.output / stem).with_suffix(suffix)

    def _relative(self, source: Path) -> Path:
        """The image's path below the folder it was found in, so outputs mirror the tree."""
        resolved = source.resolve()
        for root in self.roots:
            if resolved.is_relative_to(root):
                return resolved.relative_to(root)
        return Path(source.name)

    def already_done(self, ref: ImageRef) -> bool:
        path = self.sidecar_path(ref)
        if path is not None:
            return path.exists()
        if self.fmt == "jsonl" and self.output is not None:
            return ref.name in self._jsonl_names()
        return False

    def _jsonl_names(self) -> set[str]:
        if self._done_names is None:
            self._done_names = set(jsonl_names(self.output)) if self.output is not None else set()
        return self._done_names


def jsonl_lines(path: Path) -> Iterator[str]:
    """The complete result lines of a JSONL file; a half-written last line (a crash) is skipped."""
    if not path.is_file():
        return
    with path.open(encoding="utf-8", errors="replace") as handle:
        for raw in handle:
            line = raw.rstrip("\n")
            with contextlib.suppress(ValueError, TypeError, KeyError, AttributeError):
                if raw.endswith("\n") and json.loads(line)["name"]:
                    yield line


def jsonl_names(path: Path) -> Iterator[str]:
    """The image names a JSONL result file already holds."""
    for line in jsonl_lines(path):
        yield json.loads(line)["name"]


class JsonlWriter:
    """Appends one line per image; each line is one write, flushed, so lines never interleave."""

    def __init__(self, path: Path | None, stream: IO[str]) -> None:
        self.path = path
        self._handle: IO[str] = stream
        self._owned = False
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._handle = path.open("a", encoding="utf-8")
            except OSError as exc:
                raise output_error(exc, path) from exc
            self._owned = True

    def write(self, enrichment: Enrichment) -> None:
        self._handle.write(render(enrichment, "jsonl"))
        self._handle.flush()

    def close(self) -> None:
        if self._owned:
            self._handle.close()
