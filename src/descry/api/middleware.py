"""The outermost request layer: request id, body size and time limits, access log, metrics and the last-resort 500."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from descry.api.errors import error_body, internal_error_body
from descry.api.logs import request_id_var
from descry.api.metrics import ApiMetrics

log = logging.getLogger("descry.api")
access = logging.getLogger("descry.api.access")

REQUEST_ID_HEADER = "x-request-id"
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
QUIET_ROUTES = {"/health", "/ready", "/metrics"}


def new_request_id(offered: str | None) -> str:
    """The client's X-Request-ID when it is a sane token, else a fresh one."""
    if offered and _SAFE_ID.match(offered):
        return offered
    return uuid.uuid4().hex


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


def _too_large(limit: int) -> str:
    return (
        f"the request body is larger than {limit} bytes; send fewer or smaller files "
        "(or raise DESCRY_SECURITY__MAX_BODY_BYTES)"
    )


class RequestMiddleware:
    """Tags each request with an id, caps its body, logs and measures it, and turns crashes into JSON 500s."""

    def __init__(
        self, app: ASGIApp, *, metrics: ApiMetrics, max_body_bytes: int, body_timeout: float | None = None
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id(_header(scope, REQUEST_ID_HEADER.encode()))
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = {"code": 500, "sent": False}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["sent"] = True
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            declared = _header(scope, b"content-length")
            if declared and declared.isdigit() and int(declared) > self.max_body_bytes:
                body = error_body("payload_too_large", _too_large(self.max_body_bytes), request_id)
                await _send_json(send_with_id, 413, body)
                self.metrics.failure("payload_too_large")
            else:
                await self.app(scope, self._capped(receive), send_with_id)
        except Exception:
            log.exception("unhandled error serving %s %s", scope.get("method"), scope.get("path"))
            self.metrics.failure("internal_error")
            if not status["sent"]:
                await _send_json(send_with_id, 500, internal_error_body(request_id))
        finally:
            self._finish(scope, status["code"], time.perf_counter() - started, request_id)
            request_id_var.reset(token)

    def _capped(self, receive: Receive) -> Receive:
        """Count streamed body bytes (chunked uploads declare no length) and stop at the limit.

        The whole body must also arrive within ``body_timeout`` seconds of the request's start,
        however it trickles (408); waits after the body is in (for a disconnect) are not bounded.
        """
        seen = 0
        deadline = None if self.body_timeout is None else time.monotonic() + self.body_timeout
        body_done = False

        async def capped() -> Message:
            nonlocal seen, body_done
            message = await (receive() if body_done or deadline is None else self._by(deadline, receive))
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    raise HTTPException(413, _too_large(self.max_body_bytes))
                body_done = not message.get("more_body", False)
            return message

        return capped

    async def _by(self, deadline: float, receive: Receive) -> Message:
        try:
            return await asyncio.wait_for(receive(), max(deadline - time.monotonic(), 0.0))
        except TimeoutError:
            message = (
                f"the request body did not arrive within {self.body_timeout:g} s "
                "(DESCRY_SERVER__BODY_TIMEOUT_S); send it faster or raise the limit"
            )
            raise HTTPException(408, message, headers={"Connection": "close"}) from None

    def _finish(self, scope: Scope, status: int, seconds: float, request_id: str) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        method = scope.get("method", "")
        self.metrics.request(template, method, status, seconds)
        level = logging.DEBUG if template in QUIET_ROUTES and status < 400 else logging.INFO
        access.log(
            level,
            "method=%s path=%s route=%s status=%d duration_ms=%.1f",
            method,
            scope.get("path"),
            template,
            status,
            seconds * 1000,
            extra={"request_id": request_id},
        )


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
