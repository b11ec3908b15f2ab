"""Resolve inputs into ImageRefs: upload bytes, files, folders (recursive, glob filters), server
paths (inside allow-listed roots when they come over the network), http(s) URLs and S3 URIs.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Iterator
from pathlib import Path

from descry.config import SourceSettings
from descry.errors import InputError, SourceForbidden, SourceNotFound
from descry.schemas import ImageRef, SourceKind
from descry.sources.policy import TrustPolicy
from descry.sources.s3 import IMAGE_GLOBS, expand_s3, is_s3


def is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def upload_ref(name: str, data: bytes) -> ImageRef:
    return ImageRef(kind=SourceKind.upload, name=name or "upload", data=data)


def walk_directory(root: Path, *, recursive: bool = True, globs: Iterable[str] = IMAGE_GLOBS) -> Iterator[Path]:
    """Image files under root, sorted, matched case-insensitively by name."""
    patterns = [g.lower() for g in globs]
    candidates = root.rglob("*") if recursive else root.glob("*")
    for path in sorted(candidates):
        if path.is_file() and any(fnmatch.fnmatch(path.name.lower(), p) for p in patterns):
            yield path


def expand(
    inputs: Iterable[str],
    *,
    recursive: bool = True,
    globs: Iterable[str] = IMAGE_GLOBS,
    settings: SourceSettings | None = None,
    untrusted: bool = False,
    policy: TrustPolicy | None = None,
) -> list[ImageRef]:
    """Turn files, directories, URLs, S3 URIs and prefixes into ImageRefs, as ``policy`` allows.

    Without a policy, ``untrusted`` (input from the network) means ``TrustPolicy.network``, which
    confines paths to ``settings.allowed_roots``; otherwise ``TrustPolicy.local``.
    """
    settings = settings or SourceSettings()
    if policy is None:
        policy = TrustPolicy.network(settings) if untrusted else TrustPolicy.local(settings)
    refs: list[ImageRef] = []
    globs = tuple(globs)
    for item in inputs:
        if is_url(item):
            policy.allow_url(item)
            refs.append(ImageRef(kind=SourceKind.url, name=item, uri=item))
        elif is_s3(item):
            policy.allow_s3(item)
            refs.extend(expand_s3(item, settings, globs=globs))
        else:
            refs.extend(_expand_path(item, policy, recursive=recursive, globs=globs))
    return refs


def _expand_path(item: str, policy: TrustPolicy, *, recursive: bool, globs: tuple[str, ...]) -> list[ImageRef]:
    policy.forbid_paths(item)
    if policy.paths == "roots":
        return server_images(item, list(policy.roots))
    path = Path(item).expanduser()
    if path.is_dir():
        return [path_ref(p) for p in walk_directory(path, recursive=recursive, globs=globs)]
    if path.is_file():
        return [path_ref(path)]
    raise SourceNotFound("no such file or directory", source=item)


def path_ref(path: Path) -> ImageRef:
    return ImageRef(kind=SourceKind.path, name=str(path), uri=str(path))


def check_server_path(raw: str, roots: list[Path]) -> Path:
    """A file path sent over the network, accepted only inside an allow-listed root (symlinks resolved)."""
    resolved = _inside_roots(raw, roots)
    try:
        if not resolved.is_file():
            raise SourceNotFound("no such file", source=raw)
    except OSError as exc:
        raise InputError(f"the path cannot be used ({exc.strerror})", source=raw[:200]) from exc
    return resolved


def server_images(raw: str, roots: list[Path]) -> list[ImageRef]:
    """A file, or every image of a folder, sent over the network: only what lies inside the roots."""
    resolved = _inside_roots(raw, roots)
    try:
        is_folder = resolved.is_dir()
    except OSError as exc:
        raise InputError(f"the path cannot be used ({exc.strerror})", source=raw[:200]) from exc
    if not is_folder:
        return [path_ref(check_server_path(raw, roots))]
    resolved_roots = _resolved(roots)
    return [path_ref(p) for p in walk_directory(resolved) if _within(p.resolve(), resolved_roots)]


def _resolved(roots: list[Path]) -> list[Path]:
    return [Path(r).expanduser().resolve() for r in roots]


def _within(path: Path, roots: list[Path]) -> bool:
    return any(path == r or path.is_relative_to(r) for r in roots)


def _inside_roots(raw: str, roots: list[Path]) -> Path:
    """The resolved path, refused unless it lies inside one of the allow-listed roots."""
    if not roots:
        raise SourceForbidden(
            "reading server paths is disabled",
            source=raw,
            hint="set DESCRY_SOURCES__ALLOWED_ROOTS to the folders clients may read",
        )
    if "\x00" in raw:
        raise InputError("the path contains a NUL byte", source=raw)
    candidate = Path(raw)
    resolved_roots = _resolved(roots)
    if not candidate.is_absolute():
        candidate = resolved_roots[0] / candidate
    try:
        resolved = candidate.resolve()
    except OSError as exc:
        raise InputError(f"the path cannot be used ({exc.strerror})", source=raw[:200]) from exc
    if not _within(resolved, resolved_roots):
        raise SourceForbidden("the path is outside the allowed roots", source=raw)
    return resolved
