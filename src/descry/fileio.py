"""Writing files safely: atomically (temporary file, then rename) and with errors a user can act on."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from descry.errors import OutputError

_READ_ONLY = {errno.EACCES, errno.EPERM, errno.EROFS}
_FULL = {errno.ENOSPC, errno.EDQUOT}


def output_error(exc: OSError, target: Path) -> OutputError:
    """An OSError while writing ``target``, said in a way a user can act on."""
    if exc.errno in _READ_ONLY:
        return OutputError(
            f"cannot write {target}: the directory is read-only or not writable ({exc.strerror})",
            hint="fix the permissions or write elsewhere (--output, or the sink's output_dir)",
        )
    if exc.errno in _FULL:
        return OutputError(
            f"cannot write {target}: the disk is full ({exc.strerror})",
            hint="free some space or write to another disk",
        )
    return OutputError(f"cannot write {target}: {exc.strerror or exc}", hint="check the path and the disk")


def temp_path_for(target: Path) -> Path:
    """A fresh hidden temporary name in ``target``'s directory (same file system, so replace is atomic)."""
    return target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")


@contextlib.contextmanager
def replacing(target: Path) -> Iterator[Path]:
    """Yield a temporary path; on success it atomically replaces ``target``, on failure it is removed."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(exc, target) from exc
    tmp = temp_path_for(target)
    try:
        yield tmp
        os.replace(tmp, target)
    except OSError as exc:
        raise output_error(exc, target) from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` (os.write may write less than asked)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def atomic_write(target: Path, data: bytes, *, fsync: bool = True) -> None:
    """Write ``target`` so that readers see the old file or the whole new one, never a part."""
    with replacing(target) as tmp:
        _write_new(tmp, data, fsync=fsync, mode=_mode_of(target))


def _mode_of(target: Path) -> int | None:
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        return None


def _write_new(path: Path, data: bytes, *, fsync: bool, mode: int | None) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        write_all(fd, data)
        if mode is not None:
            os.fchmod(fd, mode)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
