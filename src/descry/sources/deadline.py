"""A total deadline for one outbound fetch, enforced on every socket operation.

httpx's timeouts bound each connect, read and write on its own, so a peer that sends one byte
just before each read timeout keeps a request alive for ever. ``DeadlineBackend`` gives every
blocking socket call (connect, TLS handshake, each read and write) at most the time left until
one deadline shared by the whole fetch, redirects included; past it the call fails with
httpcore's timeout error, which httpx raises as ``httpx.TimeoutException``.
"""

from __future__ import annotations

import ssl
import time
import typing

import httpcore
import httpx

SocketOption = tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]


def _left(deadline: float, timeout: float | None, error: type[httpcore.TimeoutException]) -> float:
    """Seconds the next socket call may take: its own timeout, but never past the deadline."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise error("the fetch's total deadline has passed")
    return left if timeout is None else min(timeout, left)


class DeadlineStream(httpcore.NetworkStream):
    """A network stream whose every read, write and TLS handshake ends by the deadline."""

    def __init__(self, inner: httpcore.NetworkStream, deadline: float) -> None:
        self._inner = inner
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _left(self._deadline, timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _left(self._deadline, timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        left = _left(self._deadline, timeout, httpcore.ConnectTimeout)
        return DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, left), self._deadline)

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)


class DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's network backend with every connection bound to one deadline (``time.monotonic``)."""

    def __init__(self, deadline: float, inner: httpcore.NetworkBackend | None = None) -> None:
        self._inner = inner or httpcore.SyncBackend()
        self._deadline = deadline

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[SocketOption] | None = None,
    ) -> httpcore.NetworkStream:
        left = _left(self._deadline, timeout, httpcore.ConnectTimeout)
        stream = self._inner.connect_tcp(host, port, left, local_address, socket_options)
        return DeadlineStream(stream, self._deadline)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: typing.Iterable[SocketOption] | None = None
    ) -> httpcore.NetworkStream:
        left = _left(self._deadline, timeout, httpcore.ConnectTimeout)
        return DeadlineStream(self._inner.connect_unix_socket(path, left, socket_options), self._deadline)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def deadline_transport(deadline: float) -> httpx.HTTPTransport:
    """httpx's own transport (no proxies from the environment), its connections bound to ``deadline``."""
    transport = httpx.HTTPTransport(trust_env=False)
    pool = getattr(transport, "_pool", None)
    if not isinstance(pool, httpcore.ConnectionPool) or not hasattr(pool, "_network_backend"):
        transport.close()
        raise RuntimeError("this httpx/httpcore version hides its connection pool; cannot bound fetch time")
    pool._network_backend = DeadlineBackend(deadline, pool._network_backend)
    return transport
