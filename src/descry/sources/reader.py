"""The reader: every source turned into a decoded image before the engine sees it.

Network reads (URLs, S3) run on a fetch pool of their own, sized by ``sources.fetch_threads``;
file reads and decoding run on the decode pool (``decode_threads``). A slow image server can
fill the fetch pool, never the decode pool, so uploads and local files keep decoding.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from descry.config import ImageLimits, Settings, SourceSettings
from descry.errors import ImageTooLarge, InputError, SourceForbidden, SourceNotFound
from descry.imaging import DecodedImage, decode
from descry.schemas import ImageRef, SourceKind
from descry.sources.fetch import fetch_url
from descry.sources.policy import TrustPolicy
from descry.sources.resolve import IMAGE_GLOBS, check_server_path, expand
from descry.sources.s3 import read_s3

NETWORK_KINDS = (SourceKind.url, SourceKind.s3)


def read_bytes(
    ref: ImageRef, settings: SourceSettings, limits: ImageLimits, *, policy: TrustPolicy | None = None
) -> bytes:
    """The bytes of one image, within the byte limit, as ``policy`` (default: the local user's) allows."""
    policy = policy or TrustPolicy.local(settings)
    if ref.kind is SourceKind.upload:
        return ref.data or b""
    raw = ref.uri or ref.name
    if ref.kind is SourceKind.path:
        return _read_file(_allowed_path(raw, policy), ref.name, limits)
    if ref.kind is SourceKind.url:
        policy.allow_url(raw)
        return fetch_url(raw, policy.fetch_settings(settings), limits)
    policy.allow_s3(raw)
    return read_s3(raw, settings, limits)


def _allowed_path(raw: str, policy: TrustPolicy) -> Path:
    policy.forbid_paths(raw)
    if policy.paths == "roots":
        return check_server_path(raw, list(policy.roots))
    return Path(raw)


def _read_file(path: Path, name: str, limits: ImageLimits) -> bytes:
    try:
        size = path.stat().st_size
        if size > limits.max_bytes:
            raise ImageTooLarge(f"the file is {size} bytes; the limit is {limits.max_bytes}", source=name)
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise SourceNotFound("no such file", source=name) from exc
    except IsADirectoryError as exc:
        raise InputError("this is a directory, not an image", source=name) from exc
    except PermissionError as exc:
        raise SourceForbidden("permission denied", source=name, hint="check the file's permissions") from exc
    except OSError as exc:
        raise InputError(f"the file cannot be read ({exc.strerror})", source=name) from exc


class SourceReader:
    """Resolves, reads and decodes images under one trust policy, on two bounded thread pools."""

    def __init__(self, settings: Settings, policy: TrustPolicy | None = None) -> None:
        self.sources = settings.sources
        self.limits = settings.limits
        self.policy = policy or TrustPolicy.local(settings.sources)
        self._fetch_pool = ThreadPoolExecutor(self.sources.fetch_threads, thread_name_prefix="descry-fetch")
        self._decode_pool = ThreadPoolExecutor(settings.decode_threads, thread_name_prefix="descry-decode")

    def expand(
        self, inputs: list[str], *, recursive: bool = True, globs: tuple[str, ...] = IMAGE_GLOBS
    ) -> list[ImageRef]:
        """Files, folders, URLs and S3 URIs or prefixes as ImageRefs, as the policy allows (blocking)."""
        return expand(inputs, recursive=recursive, globs=globs, settings=self.sources, policy=self.policy)

    def read_sync(self, ref: ImageRef) -> bytes:
        return read_bytes(ref, self.sources, self.limits, policy=self.policy)

    def load_sync(self, ref: ImageRef, target_pixels: int | None) -> DecodedImage:
        """Read and decode on the calling thread (Ray's decode stage runs this in its own tasks)."""
        return decode(self.read_sync(ref), ref.name, self.limits, target_pixels)

    async def load(self, ref: ImageRef, target_pixels: int | None) -> DecodedImage:
        """Read (network sources on the fetch pool) and decode (on the decode pool) off the event loop."""
        loop = asyncio.get_running_loop()
        if ref.kind in NETWORK_KINDS:
            data = await loop.run_in_executor(self._fetch_pool, self.read_sync, ref)
            return await loop.run_in_executor(self._decode_pool, decode, data, ref.name, self.limits, target_pixels)
        return await loop.run_in_executor(self._decode_pool, self.load_sync, ref, target_pixels)

    def close(self) -> None:
        """Stop both pools; reads still running finish on their threads, queued ones are dropped."""
        self._fetch_pool.shutdown(wait=False, cancel_futures=True)
        self._decode_pool.shutdown(wait=False, cancel_futures=True)
