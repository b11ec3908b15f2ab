"""A corpus of hostile inputs against the real app: the right 4xx, a stable code, a message, no writes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from descry.config import Settings
from tests.security.conftest import app_client, files_under
from tests.security.corpus import BadFile, bad_uploads, odd_but_valid, picture

ESCAPE = Path("/tmp/descry-escape.jpg")


def assert_refused(
    response: httpx.Response, statuses: set[int] | frozenset[int], codes: set[str] | frozenset[str]
) -> None:
    assert response.status_code < 500, response.text
    assert response.status_code in statuses, response.text
    body = response.json()
    error = body["error"]
    assert error["code"] in codes, body
    assert isinstance(error["message"], str) and len(error["message"]) > 10
    assert body["request_id"] == response.headers["x-request-id"]


@pytest.fixture
def client(open_settings: Settings) -> Iterator[TestClient]:
    with app_client(open_settings) as c:
        yield c


def _writes(settings: Settings, before: set[Path]) -> set[Path]:
    return files_under(settings.data_dir) - before


@pytest.mark.parametrize("bad", bad_uploads(), ids=lambda b: b.label)
def test_bad_upload_is_refused_and_nothing_is_written(
    bad: BadFile, client: TestClient, open_settings: Settings
) -> None:
    before = files_under(open_settings.data_dir)
    response = client.post("/v1/caption", files={"file": (bad.filename, bad.data, "image/jpeg")})
    assert_refused(response, bad.statuses, bad.codes)
    assert not _writes(open_settings, before)


def test_corpus_is_big_enough() -> None:
    assert len(bad_uploads()) + len(odd_but_valid()) >= 30


@pytest.mark.parametrize("label,filename,data", odd_but_valid(), ids=lambda v: v if isinstance(v, str) else "")
def test_odd_but_valid_images_are_captioned_without_writing(
    label: str, filename: str, data: bytes, client: TestClient, open_settings: Settings
) -> None:
    before = files_under(open_settings.data_dir)
    response = client.post("/v1/caption", files={"file": (filename, data, "image/jpeg")})
    assert response.status_code == 200, f"{label}: {response.text}"
    assert response.json()["caption"]
    assert not _writes(open_settings, before)
    assert not ESCAPE.exists()


@pytest.mark.parametrize("route", ["/caption", "/infer", "/api/enrich"])
def test_seed_routes_refuse_the_corpus(route: str, client: TestClient, open_settings: Settings) -> None:
    before = files_under(open_settings.data_dir)
    for bad in bad_uploads()[::3]:
        response = client.post(route, files={"file": (bad.filename, bad.data, "image/png")})
        assert_refused(response, bad.statuses, bad.codes)
    assert not _writes(open_settings, before)


def test_seed_batch_reports_each_bad_file_and_keeps_the_good(client: TestClient) -> None:
    corpus = bad_uploads()[:8]
    files = [("files", (b.filename, b.data, "image/jpeg")) for b in corpus]
    files.insert(3, ("files", ("good.png", picture("PNG", (30, 20)), "image/png")))
    response = client.post("/batch-caption", files=files)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == 9
    assert [bool(r.get("error")) for r in results] == [True] * 3 + [False] + [True] * 5
    assert results[3]["caption"]


# --- server paths -----------------------------------------------------------------------------


@pytest.fixture
def rooted(open_settings: Settings, tmp_path: Path) -> Iterator[tuple[TestClient, Settings]]:
    images = tmp_path / "images"
    secret = tmp_path / "secret"
    images.mkdir()
    secret.mkdir()
    (images / "ok.jpg").write_bytes(picture("JPEG", (40, 30)))
    (secret / "secret.jpg").write_bytes(picture("JPEG", (40, 30)))
    (images / "link.jpg").symlink_to(secret / "secret.jpg")
    (images / "etc").symlink_to("/etc")
    sources = open_settings.sources.model_copy(update={"allowed_roots": [images]})
    settings = open_settings.model_copy(update={"sources": sources})
    with app_client(settings) as c:
        yield c, settings


TRAVERSALS = [
    ("../secret/secret.jpg", {403}, {"forbidden_source"}),
    ("../../../../../../etc/passwd", {403}, {"forbidden_source"}),
    ("/etc/passwd", {403}, {"forbidden_source"}),
    ("ok.jpg/../../secret/secret.jpg", {403}, {"forbidden_source"}),
    ("link.jpg", {403}, {"forbidden_source"}),
    ("etc/passwd", {403}, {"forbidden_source"}),
    ("..%2fsecret%2fsecret.jpg", {404}, {"not_found"}),
    ("....//....//secret/secret.jpg", {403, 404}, {"forbidden_source", "not_found"}),
    ("ok.jpg\x00.png", {400}, {"invalid_input"}),
    ("/proc/self/environ", {403}, {"forbidden_source"}),
]


@pytest.mark.parametrize("path,statuses,codes", TRAVERSALS, ids=[t[0].replace("\x00", "NUL") for t in TRAVERSALS])
def test_path_traversal_is_refused(
    path: str, statuses: set[int], codes: set[str], rooted: tuple[TestClient, Settings]
) -> None:
    client, settings = rooted
    before = files_under(settings.data_dir)
    assert_refused(client.post("/v1/caption", json={"path": path}), statuses, codes)
    assert not _writes(settings, before)


def test_allowed_path_works_and_paths_are_off_by_default(
    rooted: tuple[TestClient, Settings], client: TestClient
) -> None:
    rooted_client, _ = rooted
    assert rooted_client.post("/v1/caption", json={"path": "ok.jpg"}).status_code == 200
    assert_refused(client.post("/v1/caption", json={"path": "/etc/hostname"}), {403}, {"forbidden_source"})


def test_upload_filenames_never_escape_the_async_batch_folder(
    open_settings: Settings, tmp_path: Path
) -> None:
    names = ["../../../../escape1.jpg", "/tmp/descry-escape.jpg", "..\\..\\escape2.jpg", "a/../../escape3.jpg"]
    with app_client(open_settings) as c:
        files = [("files", (name, picture("JPEG", (30, 20)), "image/jpeg")) for name in names]
        response = c.post("/async-batch-caption", files=files)
        assert response.status_code == 202, response.text
    written = files_under(tmp_path)
    assert all(p.is_relative_to(open_settings.data_dir) for p in written if "escape" in p.name)
    assert not ESCAPE.exists()
    assert not any((tmp_path.parent / f"escape{i}.jpg").exists() for i in (1, 2, 3))


# --- URLs (SSRF) ----------------------------------------------------------------------------------


class Redirector(BaseHTTPRequestHandler):
    """/img serves a JPEG; /to?<target> redirects there."""

    image = picture("JPEG", (40, 30))

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        if self.path.startswith("/to?"):
            self.send_response(302)
            self.send_header("Location", self.path[4:])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(self.image)))
        self.end_headers()
        self.wfile.write(self.image)


@pytest.fixture
def web() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def ssrf_targets(port: int) -> list[str]:
    return [
        f"http://127.0.0.1:{port}/img",
        f"http://localhost:{port}/img",
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        f"http://[::1]:{port}/img",
        f"http://[::ffff:127.0.0.1]:{port}/img",
        f"http://0.0.0.0:{port}/img",
        f"http://2130706433:{port}/img",
        "http://10.0.0.1/img",
        "http://192.168.1.1/img",
        "http://[fd00::1]/img",
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/_INFO",
        "ftp://127.0.0.1/img.jpg",
        "dict://127.0.0.1:11211/stat",
    ]


def test_ssrf_urls_are_refused(open_settings: Settings, web: int) -> None:
    with app_client(open_settings) as client:
        before = files_under(open_settings.data_dir)
        for url in ssrf_targets(web):
            assert_refused(client.post("/v1/caption", json={"url": url}), {403}, {"forbidden_source"})
            assert_refused(client.post("/caption", json={"url": url}), {403}, {"forbidden_source"})
        assert not _writes(open_settings, before)


def test_redirects_to_private_targets_are_refused(open_settings: Settings, web: int) -> None:
    sources = open_settings.sources.model_copy(update={"url_allowlist": ["127.0.0.1"], "fetch_timeout": 5.0})
    settings = open_settings.model_copy(update={"sources": sources})
    with app_client(settings) as client:
        ok = client.post("/v1/caption", json={"url": f"http://127.0.0.1:{web}/img"})
        assert ok.status_code == 200, ok.text
        for target in ssrf_targets(web)[1:]:
            response = client.post("/v1/caption", json={"url": f"http://127.0.0.1:{web}/to?{target}"})
            assert_refused(response, {403}, {"forbidden_source"})
        loop = client.post("/v1/caption", json={"url": f"http://127.0.0.1:{web}/to?/to?/to?/to?/to?/to?/img"})
        assert_refused(loop, {400}, {"fetch_failed"})


# --- oversized fields and bodies ----------------------------------------------------------------

LONG_FIELDS: list[tuple[str, dict[str, Any]]] = [
    ("prompt", {"prompt": "p" * 2001}),
    ("asset_id", {"asset_id": "a" * 513}),
    ("task", {"task": "t" * 65}),
    ("url", {"url": "http://example.com/" + "x" * 8200}),
    ("path", {"path": "x" * 4100}),
    ("s3_uri", {"s3_uri": "s3://bucket/" + "k" * 2100}),
    ("max_tokens", {"max_tokens": 10**9}),
    ("params", {"params": {"temperature": 1e9}}),
    ("unknown field", {"format": "markdown"}),
]


@pytest.mark.parametrize("label,extra", LONG_FIELDS, ids=[f[0] for f in LONG_FIELDS])
def test_oversized_json_fields_get_422(label: str, extra: dict[str, Any], client: TestClient) -> None:
    names_a_source = any(key in extra for key in ("url", "path", "s3_uri"))
    body = extra if names_a_source else {"path": "ok.jpg", **extra}
    assert_refused(client.post("/v1/caption", json=body), {422}, {"validation_error"})


def test_oversized_form_fields_get_422(client: TestClient) -> None:
    image = picture("JPEG", (30, 20))
    for field, value in (("prompt", "p" * 5000), ("asset_id", "a" * 600), ("task", "t" * 100)):
        response = client.post("/v1/caption", files={"file": ("a.jpg", image)}, data={field: value})
        assert_refused(response, {422}, {"validation_error"})
    response = client.post("/api/enrich", files={"file": ("a.jpg", image)}, data={"asset_id": "a" * 600})
    assert_refused(response, {422}, {"validation_error"})
    response = client.post("/v1/caption", files={"file": ("a.jpg", image)}, data={"evil": "1"})
    assert_refused(response, {400}, {"invalid_input"})


def test_body_file_and_batch_limits(open_settings: Settings) -> None:
    security = open_settings.security.model_copy(
        update={"max_body_bytes": 1_000_000, "max_files": 3, "max_batch_items": 4}
    )
    limits = open_settings.limits.model_copy(update={"max_bytes": 200_000})
    settings = open_settings.model_copy(update={"security": security, "limits": limits})
    with app_client(settings) as client:
        before = files_under(settings.data_dir)
        big = picture("BMP", (700, 500), noise=False)  # ~1 MB
        declared = client.post("/v1/caption", files={"file": ("big.bmp", big)})
        assert_refused(declared, {413}, {"payload_too_large"})

        def chunks() -> Iterator[bytes]:
            for _ in range(40):
                yield b"x" * 50_000

        streamed = client.post(
            "/v1/caption", content=chunks(), headers={"Content-Type": "multipart/form-data; boundary=zz"}
        )
        assert_refused(streamed, {413}, {"payload_too_large"})
        one_image = picture("BMP", (300, 250), noise=False)  # ~225 KB
        assert_refused(client.post("/v1/caption", files={"file": ("a.bmp", one_image)}), {413}, {"image_too_large"})
        small = picture("JPEG", (20, 20))
        four = [("files", (f"{i}.jpg", small)) for i in range(4)]
        assert_refused(client.post("/v1/caption/batch", files=four), {413}, {"payload_too_large"})
        assert_refused(client.post("/batch-caption", files=four), {413}, {"payload_too_large"})
        assert_refused(client.post("/async-batch-caption", files=four), {413}, {"payload_too_large"})
        items = {"items": [{"url": f"http://example.com/{i}.jpg"} for i in range(5)]}
        assert_refused(client.post("/v1/caption/batch", json=items), {413}, {"payload_too_large"})
        assert_refused(client.post("/v1/caption/batch", json={"items": []}), {422}, {"validation_error"})
        assert not _writes(settings, before)


def test_malformed_requests(client: TestClient) -> None:
    cases = [
        client.post("/v1/caption", content=b"{not json", headers={"Content-Type": "application/json"}),
        client.post("/v1/caption", content=b"[1, 2]", headers={"Content-Type": "application/json"}),
        client.post("/v1/caption", content=b"\xff\xfe", headers={"Content-Type": "application/json"}),
        client.post("/v1/caption", content=b"hello", headers={"Content-Type": "text/plain"}),
        client.post(
            "/v1/caption", content=b"--x\r\nbroken", headers={"Content-Type": "multipart/form-data; boundary=x"}
        ),
        client.post("/v1/caption", content=b"", headers={"Content-Type": "multipart/form-data"}),
        client.post("/v1/caption", data={"file": "not a file"}),
        client.post("/v1/caption", files={"other": ("a.jpg", b"x")}),
        client.post("/v1/caption", json={"url": "http://[::1", "prompt": None}),
        client.post("/v1/caption", json={"url": "http://exa mple.com/x.jpg"}),
        client.get("/async-batch-caption/status/..%2f..%2fetc%2fpasswd"),
        client.get("/async-batch-caption/status/" + "f" * 32),
    ]
    for response in cases:
        assert 400 <= response.status_code < 500, response.text
        assert response.json()["error"]["code"]
