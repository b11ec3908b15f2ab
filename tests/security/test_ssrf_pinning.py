"""DNS-rebinding protection: a URL's host is resolved once, checked, and that address is used."""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from descry.config import ImageLimits, SourceSettings
from descry.errors import SourceFetchError, SourceForbidden
from descry.sources import fetch, fetch_url, pinned_request

REBIND_TARGET = "10.66.66.66"


class Recorder(BaseHTTPRequestHandler):
    hosts: list[str] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        type(self).hosts.append(self.headers.get("Host", ""))
        if self.path == "/slow":
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            for _ in range(100):
                self.wfile.write(b"x" * 10)
                self.wfile.flush()
                threading.Event().wait(0.05)
            return
        body = b"\xff\xd8\xffimage"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server() -> Iterator[int]:
    Recorder.hosts = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def rebinding_dns(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """rebind.test answers 127.0.0.1 first, then a different (blocked) address; 127.0.0.1 counts as public."""
    calls: list[str] = []
    real = socket.getaddrinfo

    def fake(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "rebind.test":
            calls.append(host)
            address = "127.0.0.1" if len(calls) == 1 else REBIND_TARGET
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    monkeypatch.setattr(fetch, "_blocked_address", lambda address: address == REBIND_TARGET)
    return calls


def test_fetch_connects_to_the_vetted_address_once(server: int, rebinding_dns: list[str]) -> None:
    data = fetch_url(f"http://rebind.test:{server}/img", SourceSettings(fetch_timeout=3), ImageLimits())
    assert data.startswith(b"\xff\xd8\xff")
    assert rebinding_dns == ["rebind.test"]
    assert Recorder.hosts == [f"rebind.test:{server}"]


def test_second_lookup_is_checked_when_a_new_hop_needs_it(server: int, rebinding_dns: list[str]) -> None:
    settings = SourceSettings(fetch_timeout=3)
    fetch_url(f"http://rebind.test:{server}/img", settings, ImageLimits())
    with pytest.raises(SourceForbidden):
        fetch_url(f"http://rebind.test:{server}/img", settings, ImageLimits())
    assert len(Recorder.hosts) == 1


def test_slow_drip_download_stops_at_the_fetch_timeout(server: int) -> None:
    settings = SourceSettings(url_allowlist=["127.0.0.1"], fetch_timeout=1.0)
    with pytest.raises(SourceFetchError, match="longer than the fetch timeout"):
        fetch_url(f"http://127.0.0.1:{server}/slow", settings, ImageLimits())


def test_pinned_request_keeps_host_and_sni() -> None:
    url, headers, ext = pinned_request("https://images.example.com:8443/a.jpg?x=1", "203.0.113.7")
    assert str(url) == "https://203.0.113.7:8443/a.jpg?x=1"
    assert headers == {"Host": "images.example.com:8443"}
    assert ext == {"sni_hostname": "images.example.com"}
    url, headers, ext = pinned_request("http://example.com/a.jpg", "2001:db8::1")
    assert url.host == "2001:db8::1" and headers == {"Host": "example.com"} and ext == {}
    assert pinned_request("http://example.com/a.jpg", None) == (url.copy_with(host="example.com"), {}, {})


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rebind.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("rebind.test")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def test_https_sends_the_original_host_as_sni(tmp_path: Path, rebinding_dns: list[str]) -> None:
    cert, key = _self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    seen: list[str | None] = []
    context.sni_callback = lambda sock, name, ctx: seen.append(name)  # type: ignore[assignment,misc,return-value]
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def accept_one() -> None:
        conn, _ = listener.accept()
        try:
            with context.wrap_socket(conn, server_side=True):
                pass
        except (ssl.SSLError, OSError):
            pass

    thread = threading.Thread(target=accept_one, daemon=True)
    thread.start()
    # the certificate is self-signed, so verification fails after the handshake carried the SNI
    with pytest.raises(SourceFetchError):
        fetch_url(f"https://rebind.test:{port}/img", SourceSettings(fetch_timeout=3), ImageLimits())
    thread.join(5)
    listener.close()
    assert seen == ["rebind.test"]
    assert rebinding_dns == ["rebind.test"]
