"""``s3://bucket/key`` objects and ``s3://bucket/prefix/`` listings through boto3's credential chain."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from typing import Any

from descry.config import ImageLimits, SourceSettings
from descry.errors import ImageTooLarge, InputError, SourceFetchError, SourceForbidden, SourceNotFound
from descry.formats import RAW_GLOBS
from descry.schemas import ImageRef, SourceKind

# matched case-insensitively (IMG_0001.HEIC, DSC_0001.NEF); RAW_GLOBS are the camera RAW formats
IMAGE_GLOBS = (
    "*.jpg", "*.jpeg", "*.jpe", "*.png", "*.webp", "*.gif", "*.bmp", "*.tif", "*.tiff",
    "*.heic", "*.heif", "*.hif", "*.avif", *RAW_GLOBS,
)  # fmt: skip
_S3_URI = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])(?:/(?P<key>.*))?$")


def is_s3(text: str) -> bool:
    return text.startswith("s3://")


def parse_s3(uri: str) -> tuple[str, str]:
    """Split and validate ``s3://bucket/key``."""
    match = _S3_URI.match(uri)
    if not match or ".." in match["bucket"]:
        raise InputError(f"not a valid S3 URI: {uri!r}", hint="use s3://bucket/key or s3://bucket/prefix/")
    return match["bucket"], match["key"] or ""


def s3_client(settings: SourceSettings) -> Any:
    from descry.errors import require

    boto3 = require("boto3", "s3")
    botocore_config = require("botocore.config", "s3")
    timeouts = botocore_config.Config(
        connect_timeout=min(settings.fetch_timeout, 10.0),
        read_timeout=settings.fetch_timeout,
        retries={"max_attempts": 3, "mode": "standard"},
    )
    return boto3.client("s3", endpoint_url=settings.s3_endpoint_url, region_name=settings.aws_region, config=timeouts)


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
                    uri_of = f"s3://{bucket}/{obj['Key']}"
                    refs.append(ImageRef(kind=SourceKind.s3, name=uri_of, uri=uri_of))
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
