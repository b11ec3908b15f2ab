"""Structured key=value logs carrying the request id of the request being served."""

from __future__ import annotations

import contextvars
import logging
import sys
import time

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("descry_request_id", default=None)


def _quote(value: object) -> str:
    text = str(value)
    if text and all(c.isalnum() or c in "-_./:@+" for c in text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to every record logged while a request is served."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = request_id_var.get()
        return True


class KeyValueFormatter(logging.Formatter):
    """``ts=... level=info logger=descry.api request_id=... msg="..."``, one line per record."""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        parts = [f"ts={ts}", f"level={record.levelname.lower()}", f"logger={record.name}"]
        request_id = getattr(record, "request_id", None)
        if request_id:
            parts.append(f"request_id={request_id}")
        parts.append(f"msg={_quote(record.getMessage())}")
        if record.exc_info:
            parts.append(f"exc={_quote(self.formatException(record.exc_info))}")
        return " ".join(parts)


def configure_logging(level: str = "info") -> None:
    """Send every logger through one key=value handler on stderr (called by the server factory)."""
    handler = logging.StreamHandler()
    handler.setFormatter(KeyValueFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    uvicorn_access = logging.getLogger("uvicorn.access")  # descry.api.access logs every request instead
    uvicorn_access.handlers.clear()
    uvicorn_access.propagate = False
    # huggingface_hub and transformers log through this handler only (once), and off a terminal only errors
    from descry.backends.hub import quiet_output

    quiet_output(terminal=sys.stderr.isatty(), propagate=True)
