"""A real, scriptable OpenAI-compatible HTTP server for tests (uvicorn + Starlette in a thread).

Usage::

    from tests.fakes.openai_server import FakeOpenAIServer, Rule

    with FakeOpenAIServer(models=["fake-vlm"], latency=0.05) as server:
        server.base_url                       # "http://127.0.0.1:<port>/v1"
        server.add(Rule(status=429, times=2, retry_after="0"))   # next 2 chat requests get 429
        server.add(Rule(status=500, match="broken"))             # requests whose text has "broken"
        server.add(Rule(delay=5.0))                              # hang the next request (timeouts)
        ... call it ...
        server.chat_requests                  # list[RecordedRequest] (body = the JSON sent)
        server.max_in_flight                  # most chat requests handled at the same time

Endpoints: ``GET /v1/models`` and ``POST /v1/chat/completions`` (non-streaming).

Rules are tried in the order added; the first one whose ``endpoint`` and ``match`` fit a request
(and that has ``times`` left; ``times=None`` means forever) decides it: wait ``delay`` seconds,
then answer ``status`` (with an OpenAI-style error body, ``error_code`` and ``Retry-After``), or,
for 200, the normal reply (``reply`` replaces its text). Without a rule a request succeeds.

A chat request for a model not in ``models`` gets 404 ``model_not_found``. With ``api_key`` set,
requests without ``Authorization: Bearer <api_key>`` get 401.

The reply text derives from the request, so tests can check order without knowing any wording:
one ``image WxH FORMAT sha256:<12 hex>`` line per image of the last user message (the digest is
of the decoded data-URL bytes), then ``prompt: <the text parts>``. ``max_tokens`` truncates the
reply to that many words with ``finish_reason="length"``; usage counts words. A request with
``reasoning_effort`` also gets ``reasoning_content``; one with ``response_format`` json_object or
json_schema gets ``{"text": <reply>}`` as JSON.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import uvicorn
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


@dataclass
class Rule:
    """How to answer the requests it matches (see the module docstring)."""

    status: int = 200
    times: int | None = 1
    delay: float = 0.0
    retry_after: str | None = None
    error_code: str | None = None
    message: str | None = None
    reply: str | None = None
    finish_reason: str | None = None
    match: str | None = None
    endpoint: Literal["chat", "models"] = "chat"

    def fits(self, endpoint: str, text: str) -> bool:
        if self.endpoint != endpoint or self.times == 0:
            return False
        return self.match is None or self.match in text


@dataclass
class RecordedRequest:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None
    started: float
    finished: float = 0.0
    status: int = 0

    @property
    def image_urls(self) -> list[str]:
        """Every ``image_url`` URL in the request's messages."""
        return [part["image_url"]["url"] for part in _parts(self.body) if part.get("type") == "image_url"]

    @property
    def text(self) -> str:
        """All text parts of the request's messages, joined by newlines."""
        return "\n".join(part["text"] for part in _parts(self.body) if part.get("type") == "text")


def _parts(body: dict[str, Any] | None) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for message in (body or {}).get("messages", []):
        content = message.get("content")
        if isinstance(content, str):
            parts.append({"type": "text", "text": content})
        elif isinstance(content, list):
            parts.extend(p for p in content if isinstance(p, dict))
    return parts


def describe_data_url(url: str) -> str:
    """``image WxH FORMAT sha256:<12 hex>`` for a base64 data URL (what the fake replies per image)."""
    header, _, payload = url.partition(",")
    if not header.startswith("data:") or ";base64" not in header:
        return f"image url {hashlib.sha256(url.encode()).hexdigest()[:12]}"
    raw = base64.b64decode(payload)
    with Image.open(io.BytesIO(raw)) as img:
        return f"image {img.width}x{img.height} {img.format} sha256:{hashlib.sha256(raw).hexdigest()[:12]}"


def default_reply(body: dict[str, Any]) -> str:
    """The reply text for a chat request: its last user message, described."""
    users = [m for m in body.get("messages", []) if m.get("role") == "user"] or body.get("messages", [])[-1:]
    last = RecordedRequest("POST", "", {}, {"messages": users[-1:]}, 0.0)
    lines = [describe_data_url(url) for url in last.image_urls]
    lines.append(f"prompt: {last.text}")
    return "\n".join(lines)


class FakeOpenAIServer:
    """Starts on ``start()`` / ``with``; stops on ``stop()``. Thread-safe to inspect from tests."""

    def __init__(
        self,
        models: list[str] | tuple[str, ...] = ("fake-vlm",),
        *,
        latency: float = 0.0,
        api_key: str | None = None,
        reply: Callable[[dict[str, Any]], str] = default_reply,
    ) -> None:
        self.models = list(models)
        self.latency = latency
        self.api_key = api_key
        self.reply = reply
        self.rules: list[Rule] = []
        self._records: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._in_flight = 0
        self.max_in_flight = 0
        self._stopping = threading.Event()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # ---- scripting and inspection -------------------------------------------------------

    def add(self, *rules: Rule) -> FakeOpenAIServer:
        """Append rules; the first fitting rule decides a request."""
        with self._lock:
            self.rules.extend(rules)
        return self

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._records)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def reset(self) -> None:
        """Forget rules, records and the in-flight high-water mark."""
        with self._lock:
            self.rules.clear()
            self._records.clear()
            self.max_in_flight = 0

    # ---- lifecycle -----------------------------------------------------------------------

    def start(self) -> FakeOpenAIServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app(), lifespan="off", log_level="warning", ws="none", timeout_graceful_shutdown=1
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake OpenAI server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- the app -------------------------------------------------------------------------

    def _app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/models", self._models, methods=["GET"]),
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
            ]
        )

    def _pick(self, endpoint: str, text: str) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.fits(endpoint, text):
                    if rule.times is not None:
                        rule.times -= 1
                    return rule
        return None

    async def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self._stopping.is_set() and time.monotonic() < end:
            await asyncio.sleep(min(0.02, max(end - time.monotonic(), 0)))

    def _authorised(self, request: Request) -> bool:
        return self.api_key is None or request.headers.get("authorization") == f"Bearer {self.api_key}"

    @staticmethod
    def _error(status: int, message: str, code: str | None, retry_after: str | None = None) -> JSONResponse:
        headers = {"Retry-After": retry_after} if retry_after is not None else None
        body = {"error": {"message": message, "type": "fake_error", "code": code or status}}
        return JSONResponse(body, status_code=status, headers=headers)

    def _record(self, request: Request, body: dict[str, Any] | None) -> RecordedRequest:
        record = RecordedRequest(request.method, request.url.path, dict(request.headers), body, time.time())
        with self._lock:
            self._records.append(record)
        return record

    async def _models(self, request: Request) -> JSONResponse:
        record = self._record(request, None)
        response = await self._respond_models(request)
        record.finished, record.status = time.time(), response.status_code
        return response

    async def _respond_models(self, request: Request) -> JSONResponse:
        if not self._authorised(request):
            return self._error(401, "invalid api key", "invalid_api_key")
        rule = self._pick("models", "")
        if rule is not None:
            await self._sleep(rule.delay)
            if rule.status != 200:
                return self._error(rule.status, rule.message or "scripted failure", rule.error_code, rule.retry_after)
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in self.models]
        return JSONResponse({"object": "list", "data": data})

    async def _chat(self, request: Request) -> JSONResponse:
        try:
            body = json.loads(await request.body())
        except ValueError:
            self._record(request, None)
            return self._error(400, "the body is not JSON", "invalid_request_error")
        record = self._record(request, body)
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            response = await self._respond_chat(request, body, record)
        finally:
            with self._lock:
                self._in_flight -= 1
        record.finished, record.status = time.time(), response.status_code
        return response

    async def _respond_chat(self, request: Request, body: dict[str, Any], record: RecordedRequest) -> JSONResponse:
        if not self._authorised(request):
            return self._error(401, "invalid api key", "invalid_api_key")
        await self._sleep(self.latency)
        rule = self._pick("chat", record.text)
        if rule is not None:
            await self._sleep(rule.delay)
            if rule.status != 200:
                return self._error(rule.status, rule.message or "scripted failure", rule.error_code, rule.retry_after)
        model = body.get("model")
        if model not in self.models:
            return self._error(404, f"The model `{model}` does not exist.", "model_not_found")
        return JSONResponse(self._completion(body, rule))

    def _completion(self, body: dict[str, Any], rule: Rule | None) -> dict[str, Any]:
        text = rule.reply if rule is not None and rule.reply is not None else self.reply(body)
        words = text.split()
        finish = "stop"
        limit = body.get("max_tokens")
        if isinstance(limit, int) and len(words) > limit:
            words, finish = words[:limit], "length"
            text = " ".join(words)
        if rule is not None and rule.finish_reason:
            finish = rule.finish_reason
        fmt = (body.get("response_format") or {}).get("type")
        if fmt in ("json_object", "json_schema"):
            text = json.dumps({"text": text})
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if "reasoning_effort" in body:
            message["reasoning_content"] = f"reasoned with effort {body['reasoning_effort']}"
        sent = RecordedRequest("POST", "", {}, body, 0.0)
        prompt_tokens = len(sent.text.split()) + 10 * len(sent.image_urls)
        return {
            "id": f"chatcmpl-fake-{time.time_ns()}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": len(words),
                "total_tokens": prompt_tokens + len(words),
            },
        }
