"""Reading request bodies: forms within descry's limits, capped uploads, option fields, JSON bodies.

Every form is parsed with descry's own limits (files, fields, field size) and the framework's
multipart errors become descry's: a route that reads a form itself uses ``open_form``; a route
whose ``File``/``Form`` parameters FastAPI fills is declared on a ``FormRoute`` router, which
parses the form the same way before FastAPI reads it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from fastapi import Request, Response, UploadFile, params
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData
from starlette.datastructures import UploadFile as StarletteUpload
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

from descry.config import Settings
from descry.errors import ImageTooLarge, InputError, PayloadTooLarge
from descry.schemas import ImageRef
from descry.sources import upload_ref

M = TypeVar("M", bound=BaseModel)
CHUNK = 1024 * 1024
LIST_FIELDS = {"sinks"}
JSON_FIELDS = {"params"}
MAX_FORM_FIELDS = 64  # text fields in one form: every option once, with room for repeated ``sinks``
UTF8_MAX_BYTES = 4  # a field of max_field_chars characters is at most this many bytes per character


async def parse_form(request: Request, settings: Settings) -> FormData:
    """The request's form, parsed (once per request) within descry's limits.

    Too many files or fields: 413 ``payload_too_large``; a text field over the size limit: 422
    ``validation_error``; a malformed multipart body: 400 ``invalid_input``.
    """
    security = settings.security
    try:
        return await request.form(
            max_files=security.max_files,
            max_fields=MAX_FORM_FIELDS,
            max_part_size=security.max_field_chars * UTF8_MAX_BYTES,
        )
    except MultiPartException as exc:
        raise form_error(exc, settings) from exc
    except HTTPException as exc:  # Starlette turns its MultiPartException into a bare 400 inside an app
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, MultiPartException):
            raise form_error(cause, settings) from cause
        raise


@asynccontextmanager
async def open_form(request: Request, settings: Settings) -> AsyncIterator[FormData]:
    """``parse_form`` for a route that reads the form itself; the uploads are closed on the way out."""
    form = await parse_form(request, settings)
    try:
        yield form
    finally:
        await form.close()


def form_error(exc: MultiPartException, settings: Settings) -> Exception:
    """Starlette's multipart error (it has only a message) as descry's error with its documented code."""
    message = exc.message
    if message.startswith("Too many files"):
        limit = settings.security.max_files
        return PayloadTooLarge(
            f"more than {limit} files in one request",
            hint="split the upload into several requests or raise DESCRY_SECURITY__MAX_FILES",
        )
    if message.startswith("Too many fields"):
        return PayloadTooLarge(
            f"more than {MAX_FORM_FIELDS} form fields in one request",
            hint="send each option once; list several sinks comma-separated in one 'sinks' field",
        )
    if "exceeded maximum size" in message:
        chars = settings.security.max_field_chars
        problem = {
            "type": "string_too_long",
            "loc": ("body",),
            "msg": f"a form field is longer than {chars} characters (DESCRY_SECURITY__MAX_FIELD_CHARS)",
            "input": None,
            "ctx": {"max_length": chars},
        }
        return RequestValidationError([problem])
    return InputError(
        f"the multipart body cannot be read ({message})",
        hint="send multipart/form-data with a boundary and named parts, as curl -F does",
    )


class FormRoute(APIRoute):
    """A route whose ``File``/``Form`` parameters are parsed with descry's limits and errors.

    FastAPI parses such a body with the framework's defaults before the endpoint runs; this parses it
    first with ``parse_form`` (FastAPI then reuses the parsed form and closes it). Routes without form
    parameters are left alone, so their dependencies (API keys) still run before any body is read.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        body = self.body_field
        if body is None or not isinstance(body.field_info, params.Form):
            return handler

        async def form_first(request: Request) -> Response:
            settings: Settings = request.app.state.settings
            await parse_form(request, settings)
            return await handler(request)

        return form_first


async def read_upload(upload: UploadFile | StarletteUpload, max_bytes: int) -> ImageRef:
    """The upload's bytes as an ImageRef, reading no more than the per-image limit."""
    name = upload.filename or "upload"
    chunks: list[bytes] = []
    total = 0
    while chunk := await upload.read(CHUNK):
        total += len(chunk)
        if total > max_bytes:
            raise ImageTooLarge(
                f"the upload is larger than {max_bytes} bytes",
                source=name,
                hint="send a smaller file or raise DESCRY_LIMITS__MAX_BYTES",
            )
        chunks.append(chunk)
    return upload_ref(name, b"".join(chunks))


async def read_uploads(uploads: list[Any], settings: Settings) -> list[ImageRef]:
    """Every upload of a multipart request, in order, within the per-request file count."""
    check_file_count(len(uploads), settings)
    return [await read_upload(as_upload(u), settings.limits.max_bytes) for u in uploads]


async def read_single_upload(
    form: FormData, settings: Settings, *, hint: str = "send it with curl -F 'file=@photo.jpg'"
) -> ImageRef:
    """The one image of a multipart request's ``file`` part; none or several is an InputError."""
    files = form.getlist("file")
    if len(files) != 1:
        raise InputError(f"expected one image in a file part named 'file', got {len(files)}", hint=hint)
    return await read_upload(as_upload(files[0], "file"), settings.limits.max_bytes)


def as_upload(value: Any, field: str = "files") -> StarletteUpload:
    if not isinstance(value, StarletteUpload):
        raise InputError(
            f"the form field {field!r} must be a file",
            hint="send it as a file part, e.g. curl -F 'file=@photo.jpg'",
        )
    return value


def check_file_count(count: int, settings: Settings) -> None:
    limit = settings.security.max_files
    if count > limit:
        raise PayloadTooLarge(
            f"{count} files in one request; the limit is {limit}",
            hint="split the upload into several requests or raise DESCRY_SECURITY__MAX_FILES",
        )
    if count == 0:
        raise InputError(
            "the request has no image files", hint="attach images as multipart parts named 'files'"
        )


def validation_error(exc: ValidationError, prefix: tuple[str, ...] = ("body",)) -> RequestValidationError:
    """A pydantic error as FastAPI's request validation error (rendered as 422 by api.errors)."""
    errors = [{**e, "loc": (*prefix, *e.get("loc", ()))} for e in exc.errors(include_url=False)]
    return RequestValidationError(errors)


def parse_model(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from exc


def form_fields(form: FormData, model: type[BaseModel], *, skip: set[str]) -> dict[str, Any]:
    """The form's text fields that the model knows, with lists split and JSON decoded."""
    data: dict[str, Any] = {}
    for key in form:
        if key in skip or key not in model.model_fields:
            continue
        values = [v for v in form.getlist(key) if isinstance(v, str)]
        if not values:
            continue
        if key in LIST_FIELDS:
            data[key] = [part.strip() for v in values for part in v.split(",") if part.strip()]
        elif key in JSON_FIELDS:
            data[key] = _json_field(key, values[-1])
        elif values[-1] != "":
            data[key] = values[-1]
    unknown = sorted(k for k in form if k not in skip and k not in model.model_fields)
    if unknown:
        allowed = ", ".join(sorted(model.model_fields))
        raise InputError(f"unknown form field(s): {', '.join(unknown)}", hint=f"known fields: {allowed}")
    return data


def _json_field(key: str, value: str) -> Any:
    hint = 'e.g. {"temperature": 0.7}'
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise InputError(f"the form field {key!r} is not valid JSON ({exc.msg})", hint=hint) from exc
    except RecursionError:  # nesting deeper than Python's recursion limit: a 400, not a 500
        raise InputError(f"the form field {key!r} is nested too deeply", hint=hint) from None


def content_kind(request: Request) -> str:
    """'json' or 'form', from the Content-Type; anything else is a 415."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json" or ctype.endswith("+json"):
        return "json"
    if ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        return "form"
    raise HTTPException(
        415,
        f"unsupported Content-Type {ctype or 'none'!r}: send multipart/form-data with image files, "
        "or application/json naming a url, s3_uri or path",
    )
