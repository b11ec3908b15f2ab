"""The ``webhook`` sink: signed, idempotent POSTs to a MAM/DAM, through the durable outbox.

``deliver`` only enqueues (durably); a dispatcher task sends entries, oldest first per asset,
retrying with capped, jittered exponential backoff until ``max_attempts``, then dead-letters them.
2xx is delivered; 408/409/425/429, 5xx and connection errors are retried (Retry-After honoured);
any other status is a permanent failure.

Each request carries ``Idempotency-Key`` (stable for one asset and content: receivers use it to
drop duplicates) and ``X-Descry-Signature: sha256=<hex HMAC-SHA256 of the raw body>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import random
import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

import httpx

from descry._version import __version__
from descry.config import WebhookSettings
from descry.errors import ConfigError, DeliveryError
from descry.schemas import Enrichment, ImageRef
from descry.sinks.base import asset_key
from descry.sinks.outbox import Outbox, OutboxEntry, claim_owner

log = logging.getLogger("descry.sinks.webhook")

RETRY_STATUSES = {408, 409, 425, 429}
MAX_RETRY_AFTER = 24 * 3600.0
POLL_SECONDS = 5.0


def canonical_json(value: object) -> bytes:
    """Sorted keys, no spaces, UTF-8: the same content always gives the same bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def idempotency_key(asset: str, enrichment: Enrichment) -> str:
    """sha256 of the asset id and the canonical enrichment JSON."""
    content = canonical_json(enrichment.model_dump(mode="json"))
    return hashlib.sha256(asset.encode("utf-8") + b"\n" + content).hexdigest()


def sign(body: bytes, secret: str) -> str:
    """The ``X-Descry-Signature`` value for ``body``."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def build_payload(enrichment: Enrichment, ref: ImageRef) -> tuple[str, str, bytes]:
    """(asset, idempotency key, body) for one enrichment."""
    asset = asset_key(enrichment, ref)
    key = idempotency_key(asset, enrichment)
    body = {
        "event": "descry.enrichment",
        "asset_id": asset,
        "idempotency_key": key,
        "generator": f"descry {__version__}",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "enrichment": enrichment.model_dump(mode="json"),
    }
    return asset, key, canonical_json(body)


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """A Retry-After header (seconds or an HTTP date) in seconds, or None."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - (time.time() if now is None else now)
        except (TypeError, ValueError, IndexError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def backoff_seconds(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Exponential (base * 2^(attempt-1)), capped, with equal jitter (half fixed, half random)."""
    delay = min(cap, base * 2 ** max(attempt - 1, 0))
    return delay / 2 + rng.random() * delay / 2


class WebhookSink:
    """POSTs every enrichment to ``settings.url`` at least once, in order per asset.

    ``network``: it sends from a durable outbox, so ``SinkPool.start`` starts it at process start
    (when its URL is set) and a backlog left by an earlier process is sent without new work.
    """

    name = "webhook"
    network = True

    def __init__(
        self,
        settings: WebhookSettings,
        outbox_path: Path,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
        autostart: bool = True,
    ) -> None:
        if not settings.url or not settings.url.startswith(("http://", "https://")):
            raise ConfigError(
                f"the webhook sink needs an http(s) URL, got {settings.url!r}",
                hint="set DESCRY_SINKS__WEBHOOK__URL, e.g. https://mam.example.com/hooks/descry",
            )
        if not settings.secret:
            log.warning("webhook: no secret set, requests are not signed (set DESCRY_SINKS__WEBHOOK__SECRET)")
        self.settings = settings
        self.outbox = Outbox(outbox_path, channel="webhook")
        self._transport = transport
        self._rng = rng or random.Random()
        self._owner = claim_owner()
        self._lease = settings.timeout * 2 + 5.0
        self._client: httpx.AsyncClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._closed = False
        self._autostart = autostart
        if settings.keep_delivered_days > 0:
            self.outbox.prune_delivered(settings.keep_delivered_days * 86400)

    async def deliver(self, enrichment: Enrichment, ref: ImageRef) -> None:
        """Enqueue durably and wake the dispatcher (started on first use unless ``autostart`` is off)."""
        if self._closed:
            raise DeliveryError("the webhook sink is closed", hint="build a new sink to deliver more")
        asset, key, body = build_payload(enrichment, ref)
        await asyncio.to_thread(self.outbox.enqueue, asset, key, body)
        if self._autostart:
            await self.start()
        self._wake.set()

    async def start(self) -> None:
        """Start the dispatcher task (idempotent); claims of dead processes on this host are released first."""
        if self._closed or (self._task is not None and not self._task.done()):
            return
        try:
            released = await asyncio.to_thread(self.outbox.release_dead_claims)
        except Exception:  # their leases still run out; the dispatcher must start anyway
            log.exception("webhook: could not release the claims of dead processes")
            released = 0
        if released:
            log.info("webhook: released %d outbox entries claimed by processes that no longer run", released)
        if not self._closed and (self._task is None or self._task.done()):
            self._stop.clear()
            self._task = asyncio.create_task(self._run(), name="descry-webhook-dispatcher")

    def done(self, ref: ImageRef) -> bool:
        """The receiver is never asked; a re-run delivers again (receivers dedupe on the idempotency key)."""
        return False

    async def close(self) -> None:
        """Stop the dispatcher after its current sends, send what is due for a moment, release all."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.settings.flush_on_close > 0:
            await self._flush_due(self.settings.flush_on_close)
        if self._client is not None:
            await self._client.aclose()
        await asyncio.to_thread(self.outbox.close)

    async def drain(self, timeout: float | None = None) -> dict[str, int]:
        """Send until nothing is pending (waiting out backoffs) or ``timeout``; returns counts per state."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if await self.run_once():
                continue
            wait = await asyncio.to_thread(self.outbox.seconds_until_due)
            left = None if deadline is None else deadline - time.monotonic()
            if wait is None or (left is not None and left <= 0):
                break
            await asyncio.sleep(min(wait, POLL_SECONDS) if left is None else min(wait, left, POLL_SECONDS))
        return await asyncio.to_thread(self.outbox.counts)

    async def run_once(self) -> int:
        """Send every entry that is due now (one per asset, assets concurrently); returns how many."""
        limit = self.settings.concurrency
        entries = await asyncio.to_thread(self.outbox.claim, limit, self._lease, self._owner)
        if entries:
            await asyncio.gather(*(self._send(entry) for entry in entries))
        return len(entries)

    def dead_letters(self) -> list[OutboxEntry]:
        """Entries given up on (kept; ``requeue_dead`` sends them again)."""
        return self.outbox.entries("dead")

    def requeue_dead(self, ids: list[int] | None = None) -> int:
        """Try dead entries again from scratch (all, or those ``ids``)."""
        count = self.outbox.requeue_dead(ids)
        self._wake.set()
        return count

    def counts(self) -> dict[str, int]:
        return self.outbox.counts()

    async def _flush_due(self, seconds: float) -> None:
        """Send what is due now, without waiting out backoffs; in-flight requests are never cut."""
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline and await self.run_once():
                pass
        except Exception:
            log.exception("webhook: flushing the outbox on close failed; entries stay queued")

    async def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                if await self.run_once():
                    continue
                wait = await asyncio.to_thread(self.outbox.seconds_until_due)
            except Exception:
                log.exception("webhook dispatcher: outbox error; retrying in %.0fs", POLL_SECONDS)
                wait = POLL_SECONDS
            timeout = POLL_SECONDS if wait is None else min(max(wait, 0.05), POLL_SECONDS)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self.settings.timeout, transport=self._transport, follow_redirects=False
            )
        return self._client

    def _headers(self, entry: OutboxEntry) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"descry/{__version__}",
            "Idempotency-Key": entry.idempotency_key,
            "X-Descry-Delivery": str(entry.id),
            "X-Descry-Attempt": str(entry.attempts + 1),
            **self.settings.headers,
        }
        if self.settings.secret:
            headers["X-Descry-Signature"] = sign(entry.body, self.settings.secret)
        return headers

    async def _send(self, entry: OutboxEntry) -> None:
        url = self.settings.url or ""
        try:
            response = await self._http().post(url, content=entry.body, headers=self._headers(entry))
        except httpx.HTTPError as exc:
            await self._retry(entry, None, f"{type(exc).__name__}: {exc or 'no detail'}", None)
            return
        status = response.status_code
        if 200 <= status < 300:
            await asyncio.to_thread(self.outbox.mark_delivered, entry.id, status)
            return
        detail = f"HTTP {status}: {response.text[:200]}"
        if status in RETRY_STATUSES or status >= 500:
            await self._retry(entry, status, detail, retry_after_seconds(response.headers.get("Retry-After")))
            return
        log.error("webhook: %s refused %s permanently (%s); dead-lettered", url, entry.asset, detail)
        await asyncio.to_thread(self.outbox.mark_dead, entry.id, status, detail)

    async def _retry(
        self, entry: OutboxEntry, status: int | None, detail: str, retry_after: float | None
    ) -> None:
        attempt = entry.attempts + 1
        if attempt >= self.settings.max_attempts:
            log.error("webhook: giving up on %s after %d attempts (%s)", entry.asset, attempt, detail)
            await asyncio.to_thread(self.outbox.mark_dead, entry.id, status, detail)
            return
        delay = backoff_seconds(attempt, self.settings.backoff_base, self.settings.max_backoff, self._rng)
        if retry_after is not None:
            delay = max(delay, retry_after)
        log.warning("webhook: %s for %s; attempt %d, retrying in %.1fs", detail, entry.asset, attempt, delay)
        await asyncio.to_thread(self.outbox.mark_retry, entry.id, status, detail, time.time() + delay)
