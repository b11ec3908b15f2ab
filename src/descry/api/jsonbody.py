"""JSON request bodies: parsed and validated within bounds, large ones off the event loop.

Parsing (``json.loads``) and pydantic's validation hold the GIL while they run, so a thread alone
does not keep the server responsive: the work itself is bounded before it starts.

- a body over ``BYTES_PER_ITEM`` x ``DESCRY_SECURITY__MAX_BATCH_ITEMS`` is a 413 before parsing;
- a document with more than ``ENTRIES_PER_ITEM`` x that many keys and list elements in all is a
  413 before validation (a million unknown keys would be a million validation errors);
- nesting deeper than ``MAX_DEPTH`` is a 422 (it was Python's ``RecursionError``, a 500);
- a validation failure keeps only the first ``api.errors.MAX_DETAILS`` problems and their count.

Bodies over ``INLINE_BYTES`` are parsed, checked and validated in a worker thread, and the parsed
document is freed there too.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from descry.api.errors import MAX_DETAILS
from descry.errors import PayloadTooLarge

M = TypeVar("M", bound=BaseModel)
MAX_DEPTH = 64  # no request body of descry's is nested more than a few levels
INLINE_BYTES = 64 * 1024  # smaller bodies are parsed on the event loop (a thread costs more)
BYTES_PER_ITEM = 2048  # JSON bytes allowed per batch item (DESCRY_SECURITY__MAX_BATCH_ITEMS)
ENTRIES_PER_ITEM = 24  # keys and list elements allowed per batch item (a full item uses about 20)
BASE_ENTRIES = 1024
HINT = "split the batch or raise DESCRY_SECURITY__MAX_BATCH_ITEMS"


def max_json_bytes(max_batch_items: int) -> int:
    return max(INLINE_BYTES, BYTES_PER_ITEM * max_batch_items)


def max_entries(max_batch_items: int) -> int:
    return BASE_ENTRIES + ENTRIES_PER_ITEM * max_batch_items


class BoundedValidationError(RequestValidationError):
    """A request validation error that lists the first problems and knows how many there were."""

    def __init__(self, errors: list[dict[str, Any]], total: int) -> None:
        super().__init__(errors)
        self.total = total


def _body_error(kind: str, message: str) -> BoundedValidationError:
    return BoundedValidationError([{"type": kind, "loc": ("body",), "msg": message, "input": None}], 1)


def check_shape(value: Any, entries: int, depth: int = MAX_DEPTH) -> None:
    """Refuse a parsed document nested deeper than ``depth`` or holding more than ``entries`` keys
    and list elements in all; walked level by level (no recursion), stopping at either bound."""
    level: list[Any] = [value]
    seen = 0
    for nesting in range(depth + 1):
        children: list[Any] = []
        for item in level:
            seen += len(item) if isinstance(item, dict | list) else 0
            if seen > entries:
                raise PayloadTooLarge(f"the JSON body holds more than {entries} keys and values", hint=HINT)
            values = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
            children.extend(v for v in values if isinstance(v, dict | list))
        if not children:
            return
        if nesting == depth - 1:
            raise _body_error("json_too_deep", f"the JSON body is nested more than {depth} levels deep")
        level = children


def load(raw: bytes | str, entries: int) -> Any:
    """The decoded JSON document, or an error for bad, too deeply nested or too large JSON."""
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _body_error("json_invalid", f"JSON decode error: {exc}") from None
    except RecursionError:
        message = f"the JSON body is nested more than {MAX_DEPTH} levels deep"
        raise _body_error("json_too_deep", message) from None
    try:
        check_shape(data, entries)
    except (PayloadTooLarge, BoundedValidationError) as exc:
        error = exc.with_traceback(None)  # its frames would keep the document alive
    else:
        return data
    del data  # freed here (maybe a worker thread), not where the error is handled
    raise error


def bounded(exc: ValidationError) -> BoundedValidationError:
    """The first problems of a pydantic error, located under ``body``, and their total count."""
    listed: list[dict[str, Any]] = []
    for error in exc.errors(include_url=False, include_input=False):
        listed.append({**error, "loc": ("body", *error.get("loc", ()))})
        if len(listed) >= MAX_DETAILS:
            break
    return BoundedValidationError(listed, exc.error_count())


def unknown_keys(model: type[BaseModel], data: Any) -> BoundedValidationError | None:
    """Many unknown top-level keys, found without pydantic: its error list costs about a
    microsecond per key with the GIL held, so a body of unknown keys is answered from here."""
    if model.model_config.get("extra") != "forbid" or not isinstance(data, dict):
        return None
    known = set(model.model_fields) | {f.alias for f in model.model_fields.values() if f.alias}
    unknown = [key for key in data if key not in known]
    if len(unknown) <= MAX_DETAILS:
        return None  # pydantic reports them, with the other problems
    message = "Extra inputs are not permitted"
    listed = [{"type": "extra_forbidden", "loc": ("body", k), "msg": message} for k in unknown[:MAX_DETAILS]]
    return BoundedValidationError(listed, len(unknown))


def parse(raw: bytes | str, model: type[M], entries: int = BASE_ENTRIES) -> M:
    """Decode and validate; whatever is large is freed before the error leaves this function."""
    data = load(raw, entries)
    error = unknown_keys(model, data)
    if error is None:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            error = bounded(exc)
    del data
    raise error


async def json_model(request: Request, model: type[M]) -> M:
    """The request's JSON body validated as ``model`` (422 ``validation_error`` when it is not)."""
    items = request.app.state.settings.security.max_batch_items
    raw = await request.body()
    if len(raw) > (limit := max_json_bytes(items)):
        raise PayloadTooLarge(f"the JSON body is larger than {limit} bytes", hint=HINT)
    if len(raw) <= INLINE_BYTES:
        return parse(raw, model, max_entries(items))
    return await asyncio.to_thread(parse, raw, model, max_entries(items))
