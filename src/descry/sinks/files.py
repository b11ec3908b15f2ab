"""The file sinks' one renderer and one location rule: ``.txt``/``.json`` sidecars and JSONL lines.

Bytes: a ``.txt`` sidecar is the caption, stripped, plus a newline; a ``.json`` sidecar is the
enrichment (fields that are null left out) indented by two, plus a newline; a JSONL line is the
same document on one line. Every face (CLI, API, jobs, batch) writes these same bytes.

Location (``image_location``): without an output directory a file lands beside the image, which
must then be a file on this machine. With one, a file found below one of ``roots`` (the folders
the CLI was given, the server's allowed roots) keeps its path below that root, so the output
mirrors the tree; any other file keeps its own name; an upload keeps its (relative) name; a URL
or S3 object gets the last part of its name.

Names (``sidecar_names``): ``photo.jpg`` gets ``photo.txt``; when several images of one run would
get the same sidecar (``photo.jpg``, ``photo.png``), each of them gets its full name instead
(``photo.jpg.txt``, ``photo.png.txt``), decided for the whole run before anything is written, so
two results never go into one file. ``prefer`` may keep the short name for one image of a group
(a camera RAW, whose ``photo.xmp`` Lightroom reads).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path, PurePosixPath
from typing import Literal

from descry.errors import OutputError
from descry.schemas import Enrichment, ImageRef, SourceKind

SidecarFormat = Literal["txt", "json"]


def short_name(image: Path, suffix: str) -> Path:
    """``photo.jpg`` -> ``photo.<suffix>``."""
    return image.with_suffix(suffix)


def full_name(image: Path, suffix: str) -> Path:
    """``photo.jpg`` -> ``photo.jpg.<suffix>``."""
    return image.with_name(image.name + suffix)


def sidecar_names(
    images: Iterable[Path], suffix: str, *, prefer: Callable[[Path], bool] | None = None
) -> dict[Path, Path]:
    """Each image's sidecar with ``suffix``, no two alike (rule in the module doc); deterministic."""
    paths = sorted(set(images))
    targets = {p: short_name(p, suffix) for p in paths}
    while True:
        groups: dict[Path, list[Path]] = {}
        for image, target in targets.items():
            groups.setdefault(target, []).append(image)
        clashes = [group for group in groups.values() if len(group) > 1]
        if not clashes:
            return targets
        before = dict(targets)
        for group in clashes:
            keep = [p for p in group if prefer is not None and prefer(p) and targets[p] == short_name(p, suffix)]
            for image in group:
                if len(keep) != 1 or image != keep[0]:
                    targets[image] = full_name(image, suffix)
        if targets == before:  # only a preferred image is left holding a short name another's full name takes
            for group in clashes:
                targets.update({image: full_name(image, suffix) for image in group})


def renamed(names: dict[Path, Path], suffix: str) -> dict[Path, Path]:
    """The images whose sidecar is not the short name (they share a stem with another image)."""
    return {image: target for image, target in names.items() if target != short_name(image, suffix)}


def render_sidecar(enrichment: Enrichment, fmt: SidecarFormat) -> bytes:
    """A sidecar's bytes: the bare caption (the training-dataset convention) or the enrichment JSON."""
    if fmt == "txt":
        return (enrichment.caption.strip() + "\n").encode("utf-8")
    return (enrichment.model_dump_json(indent=2, exclude_none=True) + "\n").encode("utf-8")


def render_line(enrichment: Enrichment) -> bytes:
    """One JSONL line: the enrichment JSON (nulls left out) on one line, ending in a newline."""
    return (enrichment.model_dump_json(exclude_none=True) + "\n").encode("utf-8")


def _relative_name(name: str) -> Path:
    """``name`` as a path that stays inside an output directory."""
    parts = [p for p in PurePosixPath(name.replace("\\", "/")).parts if p not in {"/", ""}]
    if not parts or any(p in {".", ".."} for p in parts):
        raise OutputError(
            f"the image name {name!r} cannot be used as a file name in the output directory",
            hint="give the image a plain name (no '..' components)",
        )
    return Path(*parts)


def _below_root(source: Path, roots: Sequence[Path]) -> Path:
    """The image's path below the first root that holds it, else its file name."""
    resolved = source.resolve()
    for root in roots:
        root = Path(root).resolve()
        if resolved.is_relative_to(root) and resolved != root:
            return resolved.relative_to(root)
    return _relative_name(source.name)


def image_location(
    ref: ImageRef, output_dir: Path | None, sink: str, roots: Sequence[Path] = ()
) -> Path:
    """The path the image has (or would have) for writing results next to it (rule in the module doc)."""
    is_file = ref.kind == SourceKind.path and bool(ref.uri or ref.name)
    if output_dir is None:
        if is_file:
            return Path(ref.uri or ref.name)
        raise OutputError(
            f"the {sink} sink needs an output directory for {ref.name!r}, which is not a file on this machine",
            hint=f"pass --output DIR to the CLI, or set DESCRY_SINKS__{sink.upper()}__OUTPUT_DIR on a server",
        )
    if is_file:
        return Path(output_dir) / _below_root(Path(ref.uri or ref.name), roots)
    if ref.kind == SourceKind.upload:
        return Path(output_dir) / _relative_name(ref.name)
    return Path(output_dir) / _relative_name(ref.name.rstrip("/").rsplit("/", 1)[-1])
