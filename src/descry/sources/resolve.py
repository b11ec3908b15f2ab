"""Resolve inputs into ImageRefs and read their bytes.

Inputs are upload bytes, server paths (inside allow-listed roots when they come over the
network), directories (recursive, glob filters), http(s) URLs (with an SSRF guard) and
``s3://bucket/key`` or ``s3://bucket/prefix/`` URIs (boto3's normal credential chain).
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
import socket
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from descry.config import ImageLimits, SourceSettings
from descry.errors import (
    ImageTooLarge,
    InputError,
    SourceFetchError,
    SourceForbidden,
    SourceNotFound,
)
from descry.schemas import ImageRef, SourceKind

IMAGE_GLOBS = ("*.jpg", "*.jpeg", "*.jpe", "*.png", "*.webp", "*.gif", "*.bmp", "*.tif", "*.tiff", "*.heic", "*.heif")
_S3_URI = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])(?:/(?P<key>.*))?$")


def is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def is_s3(text: str) -> bool:
    return text.startswith("s3://")


def parse_s3(uri: str) -> tuple[str, str]:
    """Split and validate ``s3://bucket/key``."""
    match = _S3_URI.match(uri)
    if not match or ".." in match["bucket"]:
        raise InputError(f"not a valid S3 URI: {uri!r}", hint="use s3://bucket/key or s3://bucket/prefix/")
    return match["bucket"], match["key"] or ""


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
) -> list[ImageRef]:
    """Turn files, directories, URLs, S3 URIs and prefixes into ImageRefs.

    ``untrusted`` (input from the network) confines paths to ``settings.allowed_roots``.
    """
    refs: list[ImageRef] = []
    globs = tuple(globs)
    for item in inputs:
        if is_url(item):
            refs.append(ImageRef(kind=SourceKind.url, name=item, uri=item))
        elif is_s3(item):
            refs.extend(expand_s3(item, settings or SourceSettings(), globs=globs))
        elif untrusted:
            refs.extend(server_images(item, (settings or SourceSettings()).allowed_roots))
        else:
            path = Path(item).expanduser()
            if path.is_dir():
                refs.extend(path_ref(p) for p in walk_directory(path, recursive=recursive, globs=globs))
            elif path.is_file():
                refs.append(path_ref(path))
            else:
                raise SourceNotFound("no such file or directory", source=item)
    return refs


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


def read_bytes(ref: ImageRef, settings: SourceSettings, limits: ImageLimits, *, trusted_paths: bool = True) -> bytes:
    """The bytes of one image, within the byte limit."""
    if ref.kind is SourceKind.upload:
        return ref.data or b""
    if ref.kind is SourceKind.path:
        path = Path(ref.uri or ref.name)
        if not trusted_paths:
            path = check_server_path(str(path), settings.allowed_roots)
        return _read_file(path, ref.name, limits)
    if ref.kind is SourceKind.url:
        return fetch_url(ref.uri or ref.name, settings, limits)
    return read_s3(ref.uri or ref.name, settings, limits)


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


def _blocked_address(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def check_url(url: str, settings: SourceSettings) -> str | None:
    """Refuse schemes other than http(s) and hosts that resolve to non-public addresses.

    Returns the vetted address to connect to (the host is resolved once, here), or None when
    the host is allow-listed or private URLs are allowed.
    """
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise InputError(f"the URL is malformed ({exc})", source=url) from exc
    if parts.scheme not in {"http", "https"}:
        raise SourceForbidden(f"scheme {parts.scheme!r} is not allowed", source=url, hint="use an http(s) URL")
    try:
        host = parts.hostname
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise InputError(f"the URL is malformed ({exc})", source=url) from exc
    if not host:
        raise InputError("the URL has no host", source=url)
    if settings.allow_private_urls or host in settings.url_allowlist:
        return None
    addresses = _resolve(host, port, url)
    if any(_blocked_address(address) for address in addresses):
        raise SourceForbidden(
            f"host {host!r} resolves to a private, loopback or link-local address",
            source=url,
            hint="add the host to DESCRY_SOURCES__URL_ALLOWLIST if it is meant to be reachable",
        )
    return addresses[0]


def _resolve(host: str, port: int, url: str) -> list[str]:
    """Every address a host name resolves to (one lookup)."""
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise SourceFetchError(f"cannot resolve host {host!r}", source=url) from exc
    addresses = [str(info[4][0]) for info in infos]
    if not addresses:
        raise SourceFetchError(f"host {host!r} has no addresses", source=url)
    return addresses


def pinned_request(url: str, address: str | None) -> tuple[httpx.URL, dict[str, str], dict[str, str]]:
    """The URL rewritten to connect to the vetted address, with the Host header and TLS SNI kept.

    Connecting to the address that was checked (instead of resolving the name again) closes
    the DNS-rebinding gap; certificates are still verified against the original host name.
    """
    try:
        target = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise InputError(f"the URL is malformed ({exc})", source=url) from exc
    if address is None:
        return target, {}, {}
    headers = {"Host": target.netloc.decode("ascii")}
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    return target.copy_with(host=address.split("%")[0]), headers, extensions


def fetch_url(url: str, settings: SourceSettings, limits: ImageLimits) -> bytes:
    """GET an image URL, checking every redirect hop, pinning its vetted address and capping bytes and time."""
    timeout = httpx.Timeout(settings.fetch_timeout, connect=min(settings.fetch_timeout, 10.0))
    deadline = time.monotonic() + settings.fetch_timeout
    with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
        for _ in range(settings.max_redirects + 1):
            target, headers, extensions = pinned_request(url, check_url(url, settings))
            request = client.build_request(
                "GET", target, headers={"Accept": "image/*", **headers}, extensions=extensions
            )
            try:
                response = client.send(request, stream=True)
                try:
                    if response.is_redirect:
                        url = urljoin(url, response.headers.get("location", ""))
                        continue
                    if response.status_code == 404:
                        raise SourceNotFound("the server answered 404", source=url)
                    if response.status_code >= 400:
                        raise SourceFetchError(f"the server answered {response.status_code}", source=url)
                    return _read_capped(response, url, limits, deadline)
                finally:
                    response.close()
            except httpx.TimeoutException as exc:
                raise SourceFetchError("timed out fetching the image", source=url) from exc
            except httpx.HTTPError as exc:
                raise SourceFetchError(f"could not fetch the image ({exc})", source=url) from exc
    raise SourceFetchError(f"more than {settings.max_redirects} redirects", source=url)


def _read_capped(response: httpx.Response, url: str, limits: ImageLimits, deadline: float) -> bytes:
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limits.max_bytes:
        raise ImageTooLarge(f"the server declares {declared} bytes; the limit is {limits.max_bytes}", source=url)
    chunks: list[bytes] = []
    total = 0
    for chunk in response.iter_bytes():
        total += len(chunk)
        if total > limits.max_bytes:
            raise ImageTooLarge(f"more than {limits.max_bytes} bytes", source=url)
        if time.monotonic() > deadline:
            raise SourceFetchError(
                "the download took longer than the fetch timeout",
                source=url,
                hint="raise DESCRY_SOURCES__FETCH_TIMEOUT or use a faster server",
            )
        chunks.append(chunk)
    return b"".join(chunks)


def s3_client(settings: SourceSettings) -> Any:
    from descry.backends.hf_common import require

    boto3 = require("boto3", "s3")
    botocore_config = require("botocore.config", "s3")
    timeouts = botocore_config.Config(
        connect_timeout=min(settings.fetch_timeout, 10.0),
        read_timeout=settings.fetch_timeout,
        retries={"max_attempts": 3, "mode": "standard"},
    )
    return boto3.client(
        "s3", endpoint_url=settings.s3_endpoint_url, region_name=settings.aws_region, config=timeouts
    )


def expand_s3(uri: str, settings: SourceSettings, *, globs: Iterable[str] = IMAGE_GLOBS) -> list[ImageRef]:
    """One ref for ``s3://bucket/key``; every matching object for ``s3://bucket/prefix/``."""
    bucket, key = parse_s3(uri)
    if key and not key.endswith("/"):
        return [ImageRef(kind=SourceKind.s3, name=uri, uri=uri)]
    patterns = [g.lower() for g in globs]
    paginator = s3_client(settings).get_paginator("list_objects_v2")
    refs = []
    try:
        for page in paginator.paginate(Bucket=bucket, Prefix=key):
            for obj in page.get("Contents", []):
                name = obj["Key"].rsplit("/", 1)[-1].lower()
                if any(fnmatch.fnmatch(name, p) for p in patterns):
                    refs.append(ImageRef(kind=SourceKind.s3, name=f"s3://{bucket}/{obj['Key']}", uri=f"s3://{bucket}/{obj['Key']}"))
    except Exception as exc:
        raise _s3_error(exc, uri) from exc
    return refs


def read_s3(uri: str, settings: SourceSettings, limits: ImageLimits) -> bytes:
    bucket, key = parse_s3(uri)
    if not key:
        raise InputError("the S3 URI names a bucket, not an object", source=uri)
    try:
        obj = s3_client(settings).get_object(Bucket=bucket, Key=key)
        size = obj.get("ContentLength") or 0
        if size > limits.max_bytes:
            raise ImageTooLarge(f"the object is {size} bytes; the limit is {limits.max_bytes}", source=uri)
        data: bytes = obj["Body"].read(limits.max_bytes + 1)
    except ImageTooLarge:
        raise
    except Exception as exc:
        raise _s3_error(exc, uri) from exc
    if len(data) > limits.max_bytes:
        raise ImageTooLarge(f"more than {limits.max_bytes} bytes", source=uri)
    return data


def _s3_error(exc: Exception, uri: str) -> Exception:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
    if code in {"NoSuchKey", "404", "NoSuchBucket"}:
        return SourceNotFound("no such S3 object or bucket", source=uri)
    if code in {"AccessDenied", "403"}:
        return SourceForbidden("access denied by S3", source=uri, hint="check the AWS credentials and policy")
    if type(exc).__name__ in {"NoCredentialsError", "PartialCredentialsError"}:
        return SourceForbidden(
            "no AWS credentials found", source=uri, hint="set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile"
        )
    return SourceFetchError(f"S3 request failed ({exc})", source=uri)
