"""Sources: resolve inputs into ImageRefs, read them under a trust policy, decode them.

resolve.py  uploads, files, folders, server paths inside allowed roots
fetch.py    http(s) with the SSRF guard (vetted, pinned addresses; capped bytes and time)
s3.py       s3://bucket/key and s3://bucket/prefix/
policy.py   TrustPolicy: what a face lets its callers read
reader.py   SourceReader: fetch pool and decode pool; read_bytes for one ref
"""

from descry.sources.fetch import check_url, fetch_url, pinned_request
from descry.sources.policy import TrustPolicy
from descry.sources.reader import SourceReader, read_bytes
from descry.sources.resolve import (
    check_server_path,
    expand,
    is_url,
    path_ref,
    server_images,
    upload_ref,
    walk_directory,
)
from descry.sources.s3 import IMAGE_GLOBS, expand_s3, is_s3, parse_s3, read_s3, s3_client

__all__ = [
    "IMAGE_GLOBS",
    "SourceReader",
    "TrustPolicy",
    "check_server_path",
    "check_url",
    "expand",
    "expand_s3",
    "fetch_url",
    "is_s3",
    "is_url",
    "parse_s3",
    "path_ref",
    "pinned_request",
    "read_bytes",
    "read_s3",
    "s3_client",
    "server_images",
    "upload_ref",
    "walk_directory",
]
