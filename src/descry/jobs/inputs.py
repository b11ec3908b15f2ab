"""What a job item is: a serialisable pointer to one image, plus saving API uploads to disk.

Uploads are written under ``<data_dir>/uploads/<job_id>/`` before the job is created, so a
worker on the same host (or sharing the volume) can read them after a restart;
``submit_uploads`` saves them and creates their job in a store.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from descry.errors import InputError, OutputError
from descry.schemas import ImageRef, JobSpec, SourceKind

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
# an Idempotency-Key: 1-200 visible ASCII characters, inner spaces allowed (the column holds 255)
IDEMPOTENCY_KEY_MAX = 200
IDEMPOTENCY_KEY_PATTERN = r"^[!-~](?:[ -~]*[!-~])?$"
_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)


def check_idempotency_key(key: str | None) -> str | None:
    """The key unchanged, or None for no key; an empty, blank, over-long or non-ASCII key is an InputError.

    An empty key is refused rather than read as "no key": storing it would collide on the unique
    column, and ignoring it would silently drop the deduplication the client asked for.
    """
    if key is None:
        return None
    if len(key) > IDEMPOTENCY_KEY_MAX or not _KEY.fullmatch(key):
        raise InputError(
            f"the Idempotency-Key {key[:40]!r} is not valid",
            hint=f"send 1-{IDEMPOTENCY_KEY_MAX} visible ASCII characters, or no Idempotency-Key header",
        )
    return key


class ItemInput(BaseModel):
    """Where one job image is; ``uri`` is a file path for uploads and paths, else a URL or s3:// URI."""

    model_config = ConfigDict(frozen=True)

    kind: SourceKind
    uri: str
    name: str
    content_hash: str | None = Field(default=None, description="sha256 hex of the bytes, when known")
    asset_id: str | None = Field(default=None, max_length=512)

    def to_ref(self) -> ImageRef:
        """The ImageRef sources/imaging understand; an upload's bytes are read from its saved file."""
        if self.kind is SourceKind.upload:
            return ImageRef(kind=self.kind, name=self.name, uri=self.uri, data=Path(self.uri).read_bytes())
        return ImageRef(kind=self.kind, name=self.name, uri=self.uri)

    @classmethod
    def from_ref(cls, ref: ImageRef, *, asset_id: str | None = None) -> ItemInput:
        """An input for a path, URL or s3 ImageRef (uploads go through ``save_uploads``)."""
        if ref.kind is SourceKind.upload or not ref.uri:
            raise InputError(
                f"'{ref.name}' has no location to store in a job",
                hint="save uploaded bytes with descry.jobs.inputs.save_uploads first",
            )
        return cls(kind=ref.kind, uri=ref.uri, name=ref.name, asset_id=asset_id)


def new_job_id() -> str:
    """A fresh job id (32 hex characters)."""
    return uuid.uuid4().hex


def uploads_dir(data_dir: Path, job_id: str) -> Path:
    if not re.fullmatch(r"[0-9a-f]{32}", job_id):
        raise InputError(f"invalid job id '{job_id}'", hint="use an id made by new_job_id()")
    return Path(data_dir) / "uploads" / job_id


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _safe_name(name: str) -> str:
    base = _UNSAFE.sub("_", Path(name).name).strip("._") or "image"
    return base[:120]


def save_uploads(data_dir: Path, job_id: str, files: Iterable[ImageRef | tuple[str, bytes]]) -> list[ItemInput]:
    """Write uploaded images to ``<data_dir>/uploads/<job_id>/`` and describe them as job inputs.

    Each file is written to a temporary name and renamed, so a crash never leaves half a file
    that a worker could read. The returned inputs carry the sha256 of each upload.
    """
    folder = uploads_dir(data_dir, job_id)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"cannot create the upload folder {folder}: {exc.strerror}",
            hint="make DESCRY_DATA_DIR a writable directory",
        ) from exc
    inputs: list[ItemInput] = []
    for index, item in enumerate(files):
        name, data = _unpack(item)
        target = folder / f"{index:06d}-{_safe_name(name)}"
        tmp = target.with_name(target.name + ".part")
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            tmp.replace(target)
        except OSError as exc:
            raise OutputError(
                f"cannot save upload '{name}' to {folder}: {exc.strerror}",
                hint="check free disk space and permissions of DESCRY_DATA_DIR",
            ) from exc
        inputs.append(
            ItemInput(
                kind=SourceKind.upload,
                uri=str(target.resolve()),
                name=name,
                content_hash=sha256_bytes(data),
            )
        )
    return inputs


def _unpack(item: ImageRef | tuple[str, bytes]) -> tuple[str, bytes]:
    if isinstance(item, ImageRef):
        if item.data is None:
            raise InputError(f"upload '{item.name}' has no bytes", hint="pass the uploaded file's content")
        return item.name, item.data
    return item


def remove_uploads(data_dir: Path, job_id: str) -> bool:
    """Delete a job's saved uploads; True if there were any."""
    folder = uploads_dir(data_dir, job_id)
    if not folder.exists():
        return False
    shutil.rmtree(folder, ignore_errors=True)
    return True


class JobCreator(Protocol):
    """The part of a job store that ``submit_uploads`` needs (every ``JobStore`` is one)."""

    async def create_job(
        self,
        spec: JobSpec,
        inputs: Sequence[ItemInput | ImageRef],
        *,
        idempotency_key: str | None = None,
        job_id: str | None = None,
    ) -> str: ...
    async def find_job(self, idempotency_key: str) -> str | None: ...


async def submit_uploads(
    store: JobCreator,
    data_dir: Path,
    spec: JobSpec,
    files: Sequence[ImageRef | tuple[str, bytes]],
    *,
    others: Sequence[ItemInput | ImageRef] = (),
    idempotency_key: str | None = None,
) -> str:
    """Save uploaded files under ``data_dir/uploads/<job_id>/`` and create their job.

    ``others`` (paths, URLs, s3 URIs) join the same job after the uploads. A known idempotency
    key returns the existing job without saving anything; a failed create removes the files.
    """
    idempotency_key = check_idempotency_key(idempotency_key)
    if idempotency_key is not None and (existing := await store.find_job(idempotency_key)):
        return existing
    job_id = new_job_id()
    inputs = await asyncio.to_thread(save_uploads, data_dir, job_id, files)
    try:
        created = await store.create_job(spec, [*inputs, *others], idempotency_key=idempotency_key, job_id=job_id)
    except BaseException:
        await asyncio.to_thread(remove_uploads, data_dir, job_id)
        raise
    if created != job_id:
        await asyncio.to_thread(remove_uploads, data_dir, job_id)
    return created
