"""http(s) fetches with an SSRF guard: every hop vetted, its address pinned, bytes and total time capped."""

from __future__ import annotations

import ipaddress
import socket
import time
from urllib.parse import urljoin, urlsplit

import httpx

from descry.config import ImageLimits, SourceSettings
from descry.errors import ImageTooLarge, InputError, SourceFetchError, SourceForbidden, SourceNotFound
from descry.sources.deadline import deadline_transport


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
    deadline = time.monotonic() + settings.fetch_timeout  # connect, headers and body of every hop, together
    transport = deadline_transport(deadline)
    with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False, transport=transport) as client:
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
                    return _read_capped(response, url, limits, deadline, settings)
                finally:
                    response.close()
            except httpx.TimeoutException as exc:
                raise _too_slow(url, settings) from exc
            except httpx.HTTPError as exc:
                raise SourceFetchError(f"could not fetch the image ({exc})", source=url) from exc
    raise SourceFetchError(f"more than {settings.max_redirects} redirects", source=url)


def _too_slow(url: str, settings: SourceSettings) -> SourceFetchError:
    return SourceFetchError(
        f"the fetch took longer than the fetch timeout ({settings.fetch_timeout:g} s for connect, headers and body)",
        source=url,
        hint="raise DESCRY_SOURCES__FETCH_TIMEOUT or use a faster server",
    )


def _read_capped(
    response: httpx.Response, url: str, limits: ImageLimits, deadline: float, settings: SourceSettings
) -> bytes:
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
            raise _too_slow(url, settings)
        chunks.append(chunk)
    return b"".join(chunks)
