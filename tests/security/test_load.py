"""Overload: 64 concurrent clients for ~10 s against a real uvicorn server with a fast scripted backend.

Every answer is a 200 or a 429 with Retry-After; no request hangs past its timeout; no connection
errors; the server's memory stays flat; it still answers and stops cleanly afterwards.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from tests.security.conftest import ServerProcess
from tests.security.corpus import picture

CLIENTS = 64
WARMUP_SECONDS = 3.0
LOAD_SECONDS = 10.0
REQUEST_TIMEOUT = 15.0


@dataclass
class Tally:
    statuses: Counter[int] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    slowest: float = 0.0
    missing_retry_after: int = 0


async def hammer(base: str, seconds: float, tally: Tally) -> None:
    image = picture("JPEG", (64, 48))
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=base, timeout=REQUEST_TIMEOUT, limits=limits) as client:
        deadline = time.monotonic() + seconds

        async def one_client(index: int) -> None:
            while time.monotonic() < deadline:
                started = time.monotonic()
                try:
                    response = await client.post(
                        "/v1/caption", files={"file": (f"c{index}.jpg", image, "image/jpeg")}, data={"tags": "false"}
                    )
                except httpx.HTTPError as exc:
                    tally.errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                tally.slowest = max(tally.slowest, time.monotonic() - started)
                tally.statuses[response.status_code] += 1
                if response.status_code == 429:
                    if "retry-after" not in response.headers:
                        tally.missing_retry_after += 1
                    await asyncio.sleep(0.05)

        await asyncio.gather(*(one_client(i) for i in range(CLIENTS)))


def test_64_clients_get_answers_or_429s_and_memory_stays_flat(
    start_server: Callable[..., ServerProcess],
) -> None:
    server = start_server(
        {
            "DESCRY_AGENT__ENABLED": "false",
            "DESCRY_SECURITY__CLIENT_RATE": 40,
            "DESCRY_SECURITY__CLIENT_BURST": 64,
            "DESCRY_BATCHING__MAX_QUEUE": 48,
            "DESCRY_MODEL__BATCH_SIZE": 16,
        }
    )
    warmup = Tally()
    asyncio.run(hammer(server.base, WARMUP_SECONDS, warmup))
    rss_before = server.rss_bytes()

    tally = Tally()
    asyncio.run(hammer(server.base, LOAD_SECONDS, tally))
    time.sleep(0.5)
    rss_after = server.rss_bytes()

    print(f"load: {dict(tally.statuses)} slowest={tally.slowest:.2f}s rss {rss_before >> 20}->{rss_after >> 20} MiB")
    assert not tally.errors, tally.errors[:5]
    assert set(tally.statuses) <= {200, 429}, tally.statuses
    assert tally.statuses[200] >= 100, tally.statuses
    assert tally.missing_retry_after == 0
    assert tally.slowest < REQUEST_TIMEOUT
    assert rss_after <= rss_before * 1.25 + 48 * 2**20, (rss_before, rss_after)

    assert httpx.get(f"{server.base}/health", timeout=5).status_code == 200
    server.terminate()
