"""Connection guards for uvicorn: a header deadline, a connection cap, and the options that install them.

uvicorn closes idle keep-alive connections, but a connection that never finishes its request
line and headers is held for ever, and ``limit_concurrency`` only answers once headers are in,
so slow or half-open connections pile up. The protocol classes here add two guards to
uvicorn's own HTTP protocols:

- a **header deadline**: from the moment a connection opens, and again after each response, the
  client has ``header_timeout_s`` to complete the next request's headers, else the connection is
  closed (the body's deadline is ``RequestMiddleware``'s, which answers 408);
- a **connection cap**: a connection opened while ``max_connections`` are open gets a 503 and is
  closed at once, before any of it is read.

Both count per worker process.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from descry.api.errors import error_body
from descry.config import ServerSettings

log = logging.getLogger("descry.api")
REFUSED_LINGER_S = 1.0  # a refused client has this long to read its 503 before the connection is closed


def _over_capacity_response(limit: int) -> bytes:
    body = error_body("overloaded", f"the server has {limit} connections open; try again shortly", None)
    payload = json.dumps(body).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
        f"content-length: {len(payload)}\r\nretry-after: 1\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + payload


class GuardMixin:
    """The header deadline and connection cap, on top of one of uvicorn's HTTP protocols."""

    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    connections: set[Any]
    cycle: Any

    def __init__(self, *args: Any, header_timeout: float, max_connections: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = header_timeout
        self.max_connections = max_connections
        self._header_timer: asyncio.TimerHandle | None = None
        self._refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        if len(self.connections) > self.max_connections:
            self._refuse()
            return
        self._arm_header_timer()

    def _refuse(self) -> None:
        """Answer 503 without reading the request, half-close, and drop the connection within a second.

        Closing outright with the request unread would reset the connection and lose the 503.
        """
        log.warning("refused a connection: %d open (DESCRY_SERVER__MAX_CONNECTIONS)", len(self.connections) - 1)
        self._refused = True
        self.transport.write(_over_capacity_response(self.max_connections))
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._header_timer = self.loop.call_later(REFUSED_LINGER_S, self.transport.close)

    def data_received(self, data: bytes) -> None:
        if not self._refused:
            super().data_received(data)  # type: ignore[misc]

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)  # type: ignore[misc]

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        if not self.transport.is_closing():
            self._arm_header_timer()

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        waiting_after = self.cycle  # a new request's headers replace the cycle; until then, the clock runs
        self._header_timer = self.loop.call_later(self.header_timeout, self._header_timeout_expired, waiting_after)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout_expired(self, waiting_after: Any) -> None:
        self._header_timer = None
        if self.cycle is waiting_after and not self.transport.is_closing():
            self.transport.close()


class GuardedH11Protocol(GuardMixin, H11Protocol):
    """uvicorn's h11 protocol with the header deadline and the connection cap."""


PROTOCOL: type[GuardMixin] = GuardedH11Protocol
try:  # uvicorn's own choice: httptools when it is installed
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class GuardedHttpToolsProtocol(GuardMixin, HttpToolsProtocol):
        """uvicorn's httptools protocol with the header deadline and the connection cap."""

    PROTOCOL = GuardedHttpToolsProtocol
except ImportError:  # pragma: no cover - httptools is optional
    pass


def uvicorn_options(server: ServerSettings) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run``/``uvicorn.Config`` that put the limits in force."""
    protocol = functools.partial(
        PROTOCOL, header_timeout=server.header_timeout_s, max_connections=server.max_connections
    )
    return {"http": protocol, "timeout_keep_alive": server.keep_alive_s}
