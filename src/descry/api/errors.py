"""The only place errors become HTTP status codes and JSON bodies.

Every error response has the same shape::

    {"error": {"code": "image_too_large", "message": "..."}, "detail": "...", "request_id": "..."}

The OpenAI-compatible routes add OpenAI's ``type`` and ``param`` to ``error``; the Ollama-compatible
routes answer Ollama's ``{"error": "..."}`` (plus ``request_id``); both answer 400 for an invalid body.
``detail`` repeats the message as a string: the replaced projects' clients (and FastAPI's convention)
read ``{"detail": "..."}``. A validation error lists at most ``MAX_DETAILS`` problems and counts the
rest, so its body stays small however many problems the request has.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from descry import errors

log = logging.getLogger("descry.api")

# most specific first is not needed: the class's MRO is walked and the first match wins
STATUS: dict[type[errors.DescryError], int] = {
    errors.ImageTooLarge: 413,
    errors.PayloadTooLarge: 413,
    errors.UnsupportedFormat: 415,
    errors.CorruptImage: 400,
    errors.SourceNotFound: 404,
    errors.SourceForbidden: 403,
    errors.SourceFetchError: 400,
    errors.InputError: 400,
    errors.CapabilityError: 422,
    errors.ModelNotReady: 503,
    errors.OutOfMemory: 503,
    errors.RemoteModelError: 502,
    errors.ModelError: 500,
    errors.Overloaded: 429,
    errors.NotFound: 404,
    errors.Forbidden: 403,
    errors.AuthError: 401,
    errors.OutputError: 500,
    errors.DeliveryError: 502,
    errors.ConfigError: 500,
    errors.DescryError: 500,
}
NOT_READY_RETRY_AFTER = 5
MAX_DETAILS = 20  # validation problems listed in a 422; the rest are counted in "omitted"
MAX_FIELD_CHARS = 200  # a field path or message longer than this is cut (keys come from the client)
HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "overloaded",
}


OPENAI_PATHS = frozenset({"/v1/chat/completions", "/v1/responses"})
OLLAMA_PATHS = frozenset({"/api/chat", "/api/generate", "/api/tags", "/api/show", "/api/version", "/api/ps"})
OPENAI_TYPES = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}


def protocol_of(request: Request) -> str | None:
    """``openai`` or ``ollama`` for the compatible routes (whose clients expect their own error shape)."""
    path, root = request.scope.get("path", ""), request.scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return "openai" if path in OPENAI_PATHS else "ollama" if path in OLLAMA_PATHS else None


def shaped(request: Request, status: int, body: dict[str, Any], param: str | None = None) -> dict[str, Any]:
    """The error body in the shape the route's protocol expects."""
    protocol = protocol_of(request)
    if protocol == "ollama":
        return {"error": body["error"]["message"], "request_id": body["request_id"]}
    if protocol == "openai":
        kind = OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
        body["error"].update(type=kind, param=param)
    return body


def status_for(exc: errors.DescryError) -> int:
    """The HTTP status for a descry error."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def retry_after(exc: errors.DescryError) -> int | None:
    """Seconds a client should wait before retrying, for errors where waiting helps."""
    if isinstance(exc, errors.Overloaded):
        return max(1, round(exc.retry_after))
    if isinstance(exc, errors.ModelNotReady) and exc.retryable:
        return NOT_READY_RETRY_AFTER
    return None


def request_id_of(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def error_body(code: str, message: str, request_id: str | None, **extra: Any) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, **extra}
    return {"error": error, "detail": message, "request_id": request_id}


def _count(request: Request, code: str) -> None:
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.failure(code)


async def descry_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.DescryError)
    status = status_for(exc)
    _count(request, exc.code)
    extra = {"source": exc.source} if exc.source else {}
    if exc.hint:
        extra["hint"] = exc.hint
    headers = {}
    if (seconds := retry_after(exc)) is not None:
        headers["Retry-After"] = str(seconds)
    if status >= 500:
        log.log(
            logging.INFO if status == 503 else logging.WARNING,
            "request failed code=%s status=%d error=%r",
            exc.code,
            status,
            str(exc),
        )
    body = error_body(exc.code, str(exc), request_id_of(request), **extra)
    return JSONResponse(shaped(request, status, body), status_code=status, headers=headers)


def _cut(text: str) -> str:
    return text if len(text) <= MAX_FIELD_CHARS else text[: MAX_FIELD_CHARS - 1] + "…"


def _location(loc: tuple[Any, ...] | list[Any]) -> str:
    return _cut(".".join(str(part) for part in loc if part != "body") or "body")


def validation_total(exc: RequestValidationError) -> int:
    """How many problems the request had: a bounded error (``api.jsonbody``) lists only the first."""
    return max(int(getattr(exc, "total", 0)), len(exc.errors()))


async def validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    listed = exc.errors()[:MAX_DETAILS]
    omitted = validation_total(exc) - len(listed)
    details = [{"field": _location(e.get("loc", ())), "message": _cut(str(e.get("msg", "")))} for e in listed]
    message = "; ".join(f"{d['field']}: {d['message']}" for d in details[:3]) or "the request is not valid"
    if len(details) + omitted > 3:
        message += f" (and {len(details) + omitted - 3} more)"
    _count(request, "validation_error")
    body = error_body(
        "validation_error",
        f"invalid request: {message}",
        request_id_of(request),
        details=details,
        omitted=omitted,
    )
    status = 422 if protocol_of(request) is None else 400  # OpenAI and Ollama answer 400
    param = details[0]["field"] if details else None
    return JSONResponse(shaped(request, status, body, param), status_code=status)


def allowed_methods(request: Request) -> str:
    """Every method the app serves on the request's path: Starlette's 405 names only the first
    matching route's (GET and DELETE /v1/jobs/{id} are two routes)."""
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.routes):
        found = getattr(route, "methods", None)
        if found and route.matches(request.scope)[0] != Match.NONE:
            methods |= found
    return ", ".join(sorted(methods))


async def http_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = HTTP_CODES.get(exc.status_code, "http_error")
    body = error_body(code, str(exc.detail), request_id_of(request))
    headers = dict(getattr(exc, "headers", None) or {})
    if exc.status_code == 405 and (allowed := allowed_methods(request)):
        headers["Allow"] = allowed
    return JSONResponse(shaped(request, exc.status_code, body), status_code=exc.status_code, headers=headers or None)


def internal_error_body(request_id: str | None) -> dict[str, Any]:
    """What a client sees for a bug: no stack trace, just the id to find it in the logs."""
    message = "the server hit an unexpected error; it was logged with this request id"
    return error_body("internal_error", message, request_id)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(errors.DescryError, descry_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
