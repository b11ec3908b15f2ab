"""The sans-IO core of the OpenAI-compatible chat client: no sockets, no sleeping.

``Exchange`` builds the requests, decides about retries (yielding ``Send`` and ``Sleep`` steps and
receiving what happened), turns failures into descry errors and parses the answers. The sync and
async clients in ``descry.openai_client`` only carry the steps out.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import httpx

from descry.errors import ConfigError, DescryError, InputError, ModelNotFound, RemoteModelError

START_HINT = (
    "is the server running at {url}? start one with e.g. `vllm serve Qwen/Qwen2.5-VL-7B-Instruct` "
    "(base URL http://localhost:8000/v1) or `ollama serve` (http://localhost:11434/v1), "
    "or pass the right --base-url"
)


@dataclass
class ChatResult:
    """One chat completion: the reply and what it cost."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"
    reasoning: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    attempts: int = 1
    elapsed_s: float = 0.0


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to try again."""

    max_retries: int = 3
    backoff_base: float = 0.5
    backoff_max: float = 20.0
    retry_after_max: float = 30.0

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.retry_after_max)
        ceiling = min(self.backoff_max, self.backoff_base * (2**attempt))
        return ceiling * (0.5 + rng.random() / 2)


@dataclass(frozen=True)
class Send:
    """Send one HTTP request."""

    method: str
    path: str
    json: dict[str, Any] | None = None


@dataclass(frozen=True)
class Sleep:
    """Wait before the next attempt."""

    seconds: float


Step = Send | Sleep
Outcome = httpx.Response | httpx.TransportError | None


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: a number or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _error_body(response: httpx.Response) -> tuple[str, str]:
    """(code, message) from an OpenAI-style error body, or from the raw text."""
    try:
        body = response.json()
    except ValueError:
        return "", response.text.strip()[:500]
    error = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(error, dict):
        code = error.get("code") or error.get("type") or ""
        message = error.get("message") or error.get("detail") or str(body)
        return str(code), str(message)[:500]
    return "", str(error)[:500]


def _content_text(content: Any) -> str:
    """Message content as text: servers send a string, null, or a list of parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content)


class Exchange:
    """The sans-IO core: yields what to send or how long to sleep, receives what happened."""

    def __init__(self, base_url: str, policy: RetryPolicy, timeout: float, rng: random.Random) -> None:
        self.base_url = base_url
        self.policy = policy
        self.timeout = timeout
        self.rng = rng

    def chat(
        self,
        model: str,
        messages: list[dict[str, Any]],
        *,
        max_tokens: int | None,
        temperature: float | None,
        top_p: float | None,
        extra: dict[str, Any] | None,
    ) -> Generator[Step, Outcome, ChatResult]:
        """One chat completion with retries, timed from its first attempt to its answer."""
        body = self.chat_body(
            model, messages, max_tokens=max_tokens, temperature=temperature, top_p=top_p, extra=extra
        )
        t0 = time.perf_counter()
        response, attempts = yield from self.run(Send("POST", "/chat/completions", body))
        return self.parse_chat(response, attempts, time.perf_counter() - t0)

    def list_models(self) -> Generator[Step, Outcome, list[str]]:
        """Ids of the models the server serves (GET /models)."""
        response, _ = yield from self.run(Send("GET", "/models"))
        return self.parse_models(response)

    def run(self, send: Send) -> Generator[Step, Outcome, tuple[httpx.Response, int]]:
        """Send with retries; returns the successful response and the attempts it took, or raises a descry error."""
        attempts = self.policy.max_retries + 1
        for attempt in range(attempts):
            outcome = yield send
            retry_after: float | None = None
            if isinstance(outcome, httpx.TransportError):
                failure = self._transport_error(outcome, attempt + 1)
            elif outcome is not None and outcome.is_success:
                return outcome, attempt + 1
            elif outcome is not None:
                failure = self._http_error(outcome, send, attempt + 1)
                retry_after = parse_retry_after(outcome.headers.get("retry-after"))
            else:
                raise RuntimeError("the exchange was resumed without an outcome")
            if not failure.retryable or attempt + 1 >= attempts:
                raise failure
            yield Sleep(self.policy.delay(attempt, retry_after, self.rng))
        raise AssertionError("unreachable")

    def _transport_error(self, exc: httpx.TransportError, attempts: int) -> DescryError:
        tries = f" (tried {attempts} time{'s' if attempts > 1 else ''})"
        if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
            return RemoteModelError(
                f"the OpenAI-compatible server at {self.base_url} did not answer within "
                f"{self.timeout:g}s{tries}",
                hint=(
                    "the server may be overloaded or still loading the model; raise the timeout "
                    "(DESCRY_MODEL__REQUEST_TIMEOUT) or lower DESCRY_MODEL__MAX_CONCURRENCY"
                ),
            )
        return RemoteModelError(
            f"cannot reach the OpenAI-compatible server at {self.base_url}: "
            f"{type(exc).__name__}: {exc or 'no details'}{tries}",
            hint=START_HINT.format(url=self.base_url),
        )

    def _http_error(self, response: httpx.Response, send: Send, attempts: int) -> DescryError:
        status = response.status_code
        code, message = _error_body(response)
        where = f"{send.method} {self.base_url}{send.path}"
        model = (send.json or {}).get("model")
        detail = f"HTTP {status}" + (f": {message}" if message else "")
        if status == 429:
            return RemoteModelError(
                f"the server at {self.base_url} is rate limiting or overloaded ({detail}; "
                f"tried {attempts} times)",
                hint="lower DESCRY_MODEL__MAX_CONCURRENCY or raise DESCRY_MODEL__MAX_RETRIES",
            )
        if status >= 500:
            return RemoteModelError(
                f"the server failed on {where} ({detail}; tried {attempts} times)",
                hint="check the server's log; it may have run out of memory or crashed",
            )
        if status in (401, 403):
            return ConfigError(
                f"the server at {self.base_url} refused the API key ({detail})",
                hint="set the key with --api-key or DESCRY_MODEL__API_KEY "
                "(DESCRY_ENHANCE__API_KEY for the enhance step)",
            )
        if status == 404 and (code == "model_not_found" or (model and "model" in message.lower())):
            return ModelNotFound(
                f"the server at {self.base_url} does not serve model {model!r} ({detail})",
                hint="pass one of the models it serves (GET /v1/models) as --model, "
                "or load the model there first (vLLM: `vllm serve <model>`, Ollama: `ollama pull <model>`)",
            )
        if status == 404:
            return ConfigError(
                f"{where} does not exist ({detail})",
                hint="the base URL must be the OpenAI API root, usually ending in /v1 "
                "(e.g. http://localhost:8000/v1)",
            )
        return InputError(
            f"the server at {self.base_url} rejected the request for model {model!r} ({detail})",
            hint="the image may be too large for the model's context, or a parameter is not supported; "
            "try a smaller image, a lower max_new_tokens or another model",
        )

    def chat_body(
        self,
        model: str,
        messages: list[dict[str, Any]],
        *,
        max_tokens: int | None,
        temperature: float | None,
        top_p: float | None,
        extra: dict[str, Any] | None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model, "messages": messages}
        for key, value in (("max_tokens", max_tokens), ("temperature", temperature), ("top_p", top_p)):
            if value is not None:
                body[key] = value
        body.update(extra or {})
        body["stream"] = False
        return body

    def parse_chat(self, response: httpx.Response, attempts: int, elapsed: float) -> ChatResult:
        try:
            data = response.json()
            choice = data["choices"][0]
            message = choice.get("message") or {}
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise RemoteModelError(
                f"the server at {self.base_url} sent an answer that is not a chat completion: "
                f"{response.text[:200]!r}",
                hint="check that the base URL points at an OpenAI-compatible API (it usually ends in /v1)",
            ) from exc
        usage = data.get("usage") or {}
        reasoning = message.get("reasoning_content") or message.get("reasoning")
        return ChatResult(
            text=_content_text(message.get("content")),
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            finish_reason=str(choice.get("finish_reason") or "stop"),
            reasoning=str(reasoning) if reasoning else None,
            raw=data,
            attempts=attempts,
            elapsed_s=elapsed,
        )

    def parse_models(self, response: httpx.Response) -> list[str]:
        try:
            data = response.json()
            return [str(item["id"]) for item in data["data"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise RemoteModelError(
                f"the server at {self.base_url} sent a model list descry cannot read: "
                f"{response.text[:200]!r}",
                hint="check that the base URL points at an OpenAI-compatible API (it usually ends in /v1)",
            ) from exc
