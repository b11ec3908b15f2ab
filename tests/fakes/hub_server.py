"""A real HTTP stand-in for the Hugging Face hub, enough for huggingface_hub's downloads (stdlib server in a thread).

Usage::

    from tests.fakes.hub_server import FakeHub

    with FakeHub() as hub:
        hub.add_repo("org/tiny", {"config.json": b"{}", "model.safetensors": bytes(4096)})
        hub.add_repo("org/gated", {...}, gated=True, tokens={"hf_ok"})   # files need Authorization: Bearer hf_ok
        hub.cut_once["model.safetensors"] = 11 << 20   # the next GET of it stops after 11 MiB (connection closed)
        hub.fail.add("big.bin")                  # GETs of that file answer 500
        ... HF_ENDPOINT=hub.url ...
        hub.requests                             # list[Seen]: method, path, Range header, Authorization

Endpoints, as huggingface_hub calls them (huggingface_hub 2.x):

- ``GET /api/models/{repo}`` and ``/api/models/{repo}/revision/{rev}``: id, sha, gated, siblings with
  sizes, blob ids and LFS data (``?blobs=true`` is accepted and ignored: sizes are always sent).
- ``GET /api/models/{repo}/tree/{rev}?recursive=true``: the file listing, one page.
- ``HEAD`` / ``GET /{repo}/resolve/{rev}/{file}``: ``X-Repo-Commit``, ``ETag`` (the git blob id, or the
  sha256 for LFS files, as the hub sends), ``Content-Length``, ``Accept-Ranges``; a ``Range: bytes=N-``
  GET answers 206 with ``Content-Range``.

Errors carry the hub's ``X-Error-Code``: an unknown repo is 404 ``RepoNotFound``, an unknown file 404
``EntryNotFound``; a gated repo's files without an accepted token are 401 ``GatedRepo`` (403 when a
token is sent that was not granted access), as on the real hub, while its model info stays public.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

LFS_FROM = 1024  # files at least this big are LFS files (the hub's real rule is about 10 MB)


@dataclass
class Repo:
    files: dict[str, bytes]
    sha: str
    gated: bool = False
    tokens: set[str] = field(default_factory=set)

    def blob_id(self, name: str) -> str:
        data = self.files[name]
        return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()

    def etag(self, name: str) -> str:
        data = self.files[name]
        return hashlib.sha256(data).hexdigest() if len(data) >= LFS_FROM else self.blob_id(name)

    def entry(self, name: str, *, tree: bool) -> dict[str, Any]:
        data = self.files[name]
        entry: dict[str, Any] = {"size": len(data)}
        entry.update({"type": "file", "path": name, "oid": self.blob_id(name)} if tree else {"rfilename": name})
        if not tree:
            entry["blobId"] = self.blob_id(name)
        if len(data) >= LFS_FROM:
            digest = hashlib.sha256(data).hexdigest()
            entry["lfs"] = {"size": len(data), "pointerSize": 134, ("oid" if tree else "sha256"): digest}
        return entry


@dataclass
class Seen:
    method: str
    path: str
    range: str | None
    authorization: str | None


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.requests: list[Seen] = []
        self.cut_once: dict[str, int] = {}
        self.fail: set[str] = set()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def add_repo(
        self, repo_id: str, files: dict[str, bytes], *, gated: bool = False, tokens: set[str] | None = None
    ) -> Repo:
        sha = hashlib.sha1(repo_id.encode() + "\n".join(sorted(files)).encode()).hexdigest()
        repo = Repo(dict(files), sha, gated, set(tokens or ()))
        self.repos[repo_id] = repo
        return repo

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def downloads(self, name: str | None = None) -> list[Seen]:
        """The file GETs (not HEADs, not API calls), of one file name if given."""
        return [
            s
            for s in self.requests
            if s.method == "GET" and "/resolve/" in s.path and (name is None or s.path.endswith("/" + name))
        ]

    def start(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            fake = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            assert self._thread is not None
            self._thread.join(timeout=5)
            self._server = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


API = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)(?:/revision/(?P<rev>[^/]+)|/tree/(?P<tree>[^/]+))?$")
RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")


class _Handler(BaseHTTPRequestHandler):
    fake: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self._handle(head=False)

    def do_HEAD(self) -> None:  # noqa: N802 - the stdlib's name
        self._handle(head=True)

    def _handle(self, *, head: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        with self.fake._lock:
            self.fake.requests.append(
                Seen(self.command, path, self.headers.get("Range"), self.headers.get("Authorization"))
            )
        if (match := API.match(path)) and not head:
            self._api(match["repo"], match["rev"] or match["tree"] or "main", tree=match["tree"] is not None)
        elif match := RESOLVE.match(path):
            self._resolve(match["repo"], match["rev"], match["file"], head=head)
        else:
            self._error(404, "RepoNotFound", "not found")

    def _repo(self, repo_id: str, rev: str) -> Repo | None:
        repo = self.fake.repos.get(repo_id)
        if repo is None:
            self._error(404, "RepoNotFound", "Repository not found")
            return None
        if rev not in ("main", repo.sha):
            self._error(404, "RevisionNotFound", "Invalid rev id")
            return None
        return repo

    def _api(self, repo_id: str, rev: str, *, tree: bool) -> None:
        repo = self._repo(repo_id, rev)
        if repo is None:
            return
        if tree:
            body: Any = [repo.entry(name, tree=True) for name in sorted(repo.files)]
        else:
            body = {
                "_id": repo.sha[:24],
                "id": repo_id,
                "modelId": repo_id,
                "sha": repo.sha,
                "private": False,
                "gated": "manual" if repo.gated else False,
                "disabled": False,
                "tags": ["transformers"],
                "pipeline_tag": "image-text-to-text",
                "library_name": "transformers",
                "siblings": [repo.entry(name, tree=False) for name in sorted(repo.files)],
                "lastModified": "2026-01-01T00:00:00.000Z",
            }
            if config := _model_config(repo.files.get("config.json")):
                body["config"] = config
        self._send(200, json.dumps(body).encode(), {"Content-Type": "application/json"})

    def _resolve(self, repo_id: str, rev: str, name: str, *, head: bool) -> None:
        repo = self._repo(repo_id, rev)
        if repo is None:
            return
        if repo.gated:
            token = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
            if token not in repo.tokens:
                status = 403 if token else 401
                self._error(status, "GatedRepo", "Access to model is restricted", head=head)
                return
        if name not in repo.files:
            self._error(404, "EntryNotFound", "Entry not found", head=head, commit=repo.sha)
            return
        if not head and name in self.fake.fail:
            self._error(500, None, "Internal Error")
            return
        data = repo.files[name]
        headers = {
            "X-Repo-Commit": repo.sha,
            "ETag": f'"{repo.etag(name)}"',
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        start = _range_start(self.headers.get("Range"))
        status = 200
        if start and not head:
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            data = data[start:]
        if head:
            self._send(200, b"", {**headers, "Content-Length": str(len(data))}, body=False)
            return
        if name in self.fake.cut_once:
            self._send_cut(status, data[: self.fake.cut_once.pop(name)], len(data), headers)
            return
        self._send(status, data, headers)

    def _send_cut(self, status: int, part: bytes, length: int, headers: dict[str, str]) -> None:
        """Promise ``length`` bytes, send ``part``, and close the connection: an interrupted download."""
        self.send_response(status)
        for key, value in {**headers, "Content-Length": str(length)}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(part)
        self.wfile.flush()
        self.close_connection = True

    def _error(
        self, status: int, code: str | None, message: str, *, head: bool = False, commit: str | None = None
    ) -> None:
        headers = {"Content-Type": "application/json", "X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        if commit:
            headers["X-Repo-Commit"] = commit
        self._send(status, json.dumps({"error": message}).encode(), headers, body=not head)

    def _send(self, status: int, data: bytes, headers: dict[str, str], *, body: bool = True) -> None:
        self.send_response(status)
        headers.setdefault("Content-Length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if body:
            self.wfile.write(data)


def _model_config(data: bytes | None) -> dict[str, Any]:
    """What the hub shows of a config.json: its model_type (and architectures)."""
    try:
        config = json.loads(data or b"")
    except ValueError:
        return {}
    return {k: config[k] for k in ("model_type", "architectures") if isinstance(config, dict) and k in config}


def _range_start(header: str | None) -> int:
    match = re.fullmatch(r"bytes=(\d+)-", header or "")
    return int(match[1]) if match else 0
