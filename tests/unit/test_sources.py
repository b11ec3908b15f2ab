from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from descry.config import ImageLimits, SourceSettings
from descry.errors import ImageTooLarge, InputError, SourceForbidden, SourceNotFound
from descry.schemas import SourceKind
from descry.sources import TrustPolicy, check_server_path, check_url, expand, parse_s3, read_bytes
from tests.conftest import image_bytes


def test_expand_walks_folders_recursively_with_globs(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.JPG").write_bytes(b"1")
    (tmp_path / "y.png").write_bytes(b"2")
    (tmp_path / "y.txt").write_text("caption")
    refs = expand([str(tmp_path)])
    assert [Path(r.uri or "").name for r in refs] == ["x.JPG", "y.png"]
    assert all(r.kind is SourceKind.path for r in refs)
    assert len(expand([str(tmp_path)], recursive=False)) == 1
    assert [Path(r.name).name for r in expand([str(tmp_path)], globs=["*.png"])] == ["y.png"]


def test_expand_urls_and_missing_paths(tmp_path: Path) -> None:
    refs = expand(["https://example.com/a.jpg"])
    assert refs[0].kind is SourceKind.url
    with pytest.raises(SourceNotFound):
        expand([str(tmp_path / "missing")])


def test_server_paths_stay_inside_roots(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    inside = root / "ok.jpg"
    inside.write_bytes(b"x")
    outside = tmp_path / "secret.jpg"
    outside.write_bytes(b"x")
    (root / "link.jpg").symlink_to(outside)
    assert check_server_path(str(inside), [root]) == inside.resolve()
    assert check_server_path("ok.jpg", [root]) == inside.resolve()
    for bad in ["../secret.jpg", str(outside), str(root / "link.jpg"), "/etc/passwd"]:
        with pytest.raises(SourceForbidden):
            check_server_path(bad, [root])
    with pytest.raises(SourceForbidden):
        check_server_path(str(inside), [])
    with pytest.raises(SourceNotFound):
        check_server_path("nope.jpg", [root])


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x.jpg",
        "http://localhost/x.jpg",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/x.jpg",
        "http://10.0.0.5/x.jpg",
        "http://[::ffff:127.0.0.1]/x.jpg",
        "file:///etc/passwd",
        "ftp://example.com/x.jpg",
    ],
)
def test_urls_to_private_addresses_or_other_schemes_are_refused(url: str) -> None:
    with pytest.raises(SourceForbidden):
        check_url(url, SourceSettings())


def test_private_urls_allowed_when_configured() -> None:
    check_url("http://127.0.0.1/x.jpg", SourceSettings(allow_private_urls=True))
    check_url("http://localhost/x.jpg", SourceSettings(url_allowlist=["localhost"]))


@pytest.mark.parametrize("uri", ["s3://", "s3://a", "s3://UPPER/key", "s3://bad..name/k", "s3:/x/y"])
def test_invalid_s3_uris(uri: str) -> None:
    with pytest.raises(InputError):
        parse_s3(uri)


@mock_aws
def test_s3_objects_and_prefixes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    settings = SourceSettings(aws_region="us-east-1")
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="photos")
    jpeg = image_bytes("JPEG")
    for key in ["shoot/a.jpg", "shoot/b.png", "shoot/readme.md", "other/c.jpg"]:
        s3.put_object(Bucket="photos", Key=key, Body=jpeg)
    refs = expand(["s3://photos/shoot/"], settings=settings)
    assert [r.name for r in refs] == ["s3://photos/shoot/a.jpg", "s3://photos/shoot/b.png"]
    assert read_bytes(refs[0], settings, ImageLimits()) == jpeg
    with pytest.raises(ImageTooLarge):
        read_bytes(refs[0], settings, ImageLimits(max_bytes=10))
    missing = expand(["s3://photos/shoot/none.jpg"], settings=settings)[0]
    with pytest.raises(SourceNotFound):
        read_bytes(missing, settings, ImageLimits())


def test_read_bytes_checks_untrusted_paths(tmp_path: Path) -> None:
    photo = tmp_path / "p.jpg"
    photo.write_bytes(image_bytes())
    ref = expand([str(photo)])[0]
    assert read_bytes(ref, SourceSettings(), ImageLimits()) == photo.read_bytes()
    with pytest.raises(SourceForbidden):
        read_bytes(ref, SourceSettings(), ImageLimits(), policy=TrustPolicy.network(SourceSettings()))
    with pytest.raises(ImageTooLarge):
        read_bytes(ref, SourceSettings(), ImageLimits(max_bytes=5))



@pytest.fixture
def web(tmp_path: Path):  # type: ignore[no-untyped-def]
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    jpeg = image_bytes("JPEG")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            port = self.server.server_address[1]
            if self.path == "/img":
                self._send(200, jpeg)
            elif self.path == "/big":
                self._send(200, b"x" * 5000)
            elif self.path == "/hop":
                self.send_response(302)
                self.send_header("Location", f"http://localhost:{port}/img")
                self.end_headers()
            elif self.path == "/meta":
                self.send_response(302)
                self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
                self.end_headers()
            else:
                self._send(404, b"no")

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", jpeg
    server.shutdown()
    server.server_close()


def test_fetch_checks_every_redirect_hop_and_caps_bytes(web) -> None:  # type: ignore[no-untyped-def]
    from descry.sources import fetch_url

    base, jpeg = web
    allow = SourceSettings(url_allowlist=["127.0.0.1"])
    assert fetch_url(f"{base}/img", allow, ImageLimits()) == jpeg
    with pytest.raises(SourceForbidden):
        fetch_url(f"{base}/hop", allow, ImageLimits())
    with pytest.raises(SourceForbidden):
        fetch_url(f"{base}/meta", allow, ImageLimits())
    with pytest.raises(ImageTooLarge):
        fetch_url(f"{base}/big", allow, ImageLimits(max_bytes=1000))
    with pytest.raises(SourceNotFound):
        fetch_url(f"{base}/gone", allow, ImageLimits())
    with pytest.raises(SourceForbidden):
        fetch_url(f"{base}/img", SourceSettings(), ImageLimits())


def test_trust_policy_decides_what_a_face_reads(tmp_path: Path) -> None:
    from descry.sources import path_ref

    photo = tmp_path / "p.jpg"
    photo.write_bytes(image_bytes())
    ref = path_ref(photo)
    settings, limits = SourceSettings(), ImageLimits()
    assert read_bytes(ref, settings, limits, policy=TrustPolicy.local(settings)) == photo.read_bytes()
    inside = TrustPolicy.network(SourceSettings(allowed_roots=[tmp_path]))
    assert read_bytes(ref, settings, limits, policy=inside) == photo.read_bytes()
    elsewhere = TrustPolicy.network(SourceSettings(allowed_roots=[tmp_path / "other"]))
    nothing = TrustPolicy(paths="none")
    for policy in (elsewhere, nothing):
        with pytest.raises(SourceForbidden):
            read_bytes(ref, settings, limits, policy=policy)
        with pytest.raises(SourceForbidden):
            expand([str(photo)], policy=policy)
    with pytest.raises(SourceForbidden):
        expand(["http://example.com/a.jpg"], policy=TrustPolicy(urls=False))
    with pytest.raises(SourceForbidden):
        expand(["s3://photos/a.jpg"], policy=TrustPolicy(s3=False))
    private = TrustPolicy(private_urls=True).fetch_settings(settings)
    assert private.allow_private_urls and check_url("http://127.0.0.1/a.jpg", private) is None
