"""A small client for ``/v1/chat/completions`` on any OpenAI-compatible server.

Works with vLLM, Ollama, SGLang, LM Studio and llama.cpp. ``ChatClient`` is synchronous and
``AsyncChatClient`` is its asyncio twin; both drive one sans-IO core (``descry.openai_core.Exchange``)
that builds requests, parses answers and decides about retries, so the two never drift apart: each
client only sends the requests and sleeps the pauses the core asks for.

Retries: connection errors, timeouts, HTTP 429 and 5xx are retried with exponential backoff and
jitter, honouring ``Retry-After`` up to ``retry_after_max`` seconds. Everything else fails at once
with a descry error that says what to do about it.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Generator
from typing import Any, TypeVar

import httpx

from descry.errors import ConfigError
from descry.openai_core import START_HINT, ChatResult, Exchange, Outcome, RetryPolicy, Sleep, Step, parse_retry_after

__all__ = ["START_HINT", "AsyncChatClient", "ChatClient", "ChatResult", "RetryPolicy", "parse_retry_after"]

T = TypeVar("T")


class _ClientBase:
    """Settings shared by the sync and async clients."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 120.0,
        connect_timeout: float | None = None,
        max_retries: int = 3,
        backoff_base: float = 0.5,
        backoff_max: float = 20.0,
        retry_after_max: float = 30.0,
        max_connections: int = 64,
        seed: int | None = None,
    ) -> None:
        if not base_url:
            raise ConfigError(
                "no base URL was given for the OpenAI-compatible server",
                hint="pass --base-url http://localhost:8000/v1 or set DESCRY_MODEL__BASE_URL",
            )
        self.base_url = base_url.rstrip("/")
        policy = RetryPolicy(max_retries, backoff_base, backoff_max, retry_after_max)
        self._core = Exchange(self.base_url, policy, timeout, random.Random(seed))
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http_kwargs: dict[str, Any] = {
            "base_url": self.base_url,
            "headers": headers,
            "timeout": httpx.Timeout(timeout, connect=connect_timeout or min(timeout, 10.0)),
            "limits": httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
        }


class ChatClient(_ClientBase):
    """Synchronous client; thread-safe, one connection pool. Use as a context manager or call close()."""

    def __init__(self, base_url: str, api_key: str | None = None, **kwargs: Any) -> None:
        transport = kwargs.pop("transport", None)
        super().__init__(base_url, api_key, **kwargs)
        self._http = httpx.Client(transport=transport, **self._http_kwargs)

    def _drive(self, steps: Generator[Step, Outcome, T]) -> T:
        outcome: Outcome = None
        while True:
            try:
                step = steps.send(outcome)
            except StopIteration as stop:
                return stop.value
            outcome = self._perform(step)

    def _perform(self, step: Step) -> Outcome:
        if isinstance(step, Sleep):
            time.sleep(step.seconds)
            return None
        try:
            return self._http.request(step.method, step.path, json=step.json)
        except httpx.TransportError as exc:
            return exc

    def chat(
        self,
        model: str,
        messages: list[dict[str, Any]],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        extra: dict[str, Any] | None = None,
    ) -> ChatResult:
        """One chat completion; ``extra`` is merged into the JSON body (e.g. reasoning_effort)."""
        return self._drive(
            self._core.chat(model, messages, max_tokens=max_tokens, temperature=temperature, top_p=top_p, extra=extra)
        )

    def list_models(self) -> list[str]:
        """Ids of the models the server serves (GET /models)."""
        return self._drive(self._core.list_models())

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ChatClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncChatClient(_ClientBase):
    """The asyncio twin of ``ChatClient`` (same arguments, same errors); call ``aclose()`` when done."""

    def __init__(self, base_url: str, api_key: str | None = None, **kwargs: Any) -> None:
        transport = kwargs.pop("transport", None)
        super().__init__(base_url, api_key, **kwargs)
        self._http = httpx.AsyncClient(transport=transport, **self._http_kwargs)

    async def _drive(self, steps: Generator[Step, Outcome, T]) -> T:
        outcome: Outcome = None
        while True:
            try:
                step = steps.send(outcome)
            except StopIteration as stop:
                return stop.value
            outcome = await self._perform(step)

    async def _perform(self, step: Step) -> Outcome:
        if isinstance(step, Sleep):
            await asyncio.sleep(step.seconds)
            return None
        try:
            return await self._http.request(step.method, step.path, json=step.json)
        except httpx.TransportError as exc:
            return exc

    async def chat(
        self,
        model: str,
        messages: list[dict[str, Any]],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        extra: dict[str, Any] | None = None,
    ) -> ChatResult:
        """One chat completion; ``extra`` is merged into the JSON body (e.g. reasoning_effort)."""
        return await self._drive(
            self._core.chat(model, messages, max_tokens=max_tokens, temperature=temperature, top_p=top_p, extra=extra)
        )

    async def list_models(self) -> list[str]:
        """Ids of the models the server serves (GET /models)."""
        return await self._drive(self._core.list_models())

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncChatClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
