"""Where a sink's result file goes: beside the image, or under an output directory."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from descry import schemas
from descry.errors import OutputError


def _relative_name(name: str) -> Path:
    """``ref.name`` as a path that stays inside an output directory."""
    parts = [p for p in PurePosixPath(name.replace("\\", "/")).parts if p not in {"/", ""}]
    if not parts or any(p in {".", ".."} for p in parts):
        raise OutputError(
            f"the image name {name!r} cannot be used as a file name in the output directory",
            hint="give the image a plain name (no '..' components)",
        )
    return Path(*parts)


def image_location(ref: schemas.ImageRef, output_dir: Path | None, sink: str) -> Path:
    """The path the image has (or would have) for writing results next to it.

    A server path keeps its directory unless ``output_dir`` is set; any other image is placed
    in ``output_dir`` under its name.
    """
    if output_dir is not None:
        return Path(output_dir) / _relative_name(ref.name)
    if ref.kind == schemas.SourceKind.path and ref.uri:
        return Path(ref.uri)
    raise OutputError(
        f"the {sink} sink needs an output directory for {ref.name!r}, which is not a file on this machine",
        hint=f"set DESCRY_SINKS__{sink.upper()}__OUTPUT_DIR to a writable directory",
    )
