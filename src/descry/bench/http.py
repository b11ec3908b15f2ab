"""descry over HTTP: the real app (``create_app``) under uvicorn on a local port, with concurrent clients.

The server shares the benchmark's already-loaded engine (``create_app(settings, engine=...)``) and
runs on the benchmark's event loop; the clients run on a thread of their own with their own loop,
each sending its requests one after another, as a MAM's workers would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

from descry.bench.phases import Sample
from descry.bench.workload import MemoryPeak, percentile
from descry.engine.pipeline import Engine
from descry.errors import MissingDependency
from descry.schemas import GenerationParams


def http_available() -> str | None:
    """None when the HTTP stack can run here, else why not."""
    try:
        import httpx  # noqa: F401
        import uvicorn  # noqa: F401

        import descry.api.app  # noqa: F401
    except ImportError as exc:
        return f"{exc.name or exc} is not importable ({exc})"
    except Exception as exc:  # e.g. MissingDependency raised while the app's modules import
        return f"the API could not be imported: {exc}"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def serving(engine: Engine) -> AsyncIterator[str]:
    """Serve ``create_app(settings, engine=engine)`` on 127.0.0.1 for the block; yields the base URL."""
    try:
        import uvicorn

        from descry.api.app import create_app
    except ImportError as exc:
        raise MissingDependency(exc.name or "fastapi", "server") from exc
    app = create_app(engine.settings, engine=engine)
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="on"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("uvicorn stopped before it started")
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def form(params: GenerationParams) -> dict[str, str]:
    """The multipart option fields: no tags, and the pinned generation parameters."""
    return {"tags": "false", "params": json.dumps(params.model_dump(exclude_none=True))}


async def _clients(
    url: str, images: list[tuple[str, bytes]], fields: dict[str, str], clients: int, per_client: int
) -> tuple[float, list[Sample], list[str]]:
    import httpx

    errors: list[str] = []
    samples: list[Sample] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:

        async def one(index: int, record: bool = True) -> None:
            name, data = images[index % len(images)]
            t0 = time.perf_counter()
            response = await client.post(
                "/v1/caption", files={"file": (name, data, "image/jpeg")}, data=fields
            )
            latency = time.perf_counter() - t0
            if response.status_code != 200:
                errors.append(f"{response.status_code}: {response.text[:200]}")
                return
            body = response.json()
            if not record:
                return
            if body.get("attempts") != 1:
                errors.append(f"{body.get('attempts')} attempts: the agent retried (it should be off)")
            samples.append(Sample(latency=latency, stages=_stages(body), output_tokens=0))

        async def worker(start: int) -> None:
            for k in range(per_client):
                await one(start * per_client + k)

        await one(0, record=False)  # warm the connection and the route
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(c) for c in range(clients)))
        seconds = time.perf_counter() - t0
    return seconds, samples, errors


def _stages(body: dict[str, Any]) -> dict[str, float]:
    """The server's own timings for this image (batch stages are whole-batch times, not shares)."""
    timings = body.get("timings") or {}
    return {"decode": float(timings.get("decode_s", 0.0)), "server_total": float(timings.get("total_s", 0.0))}


async def http_phase(
    engine: Engine,
    images: list[tuple[str, bytes]],
    params: GenerationParams,
    concurrency: tuple[int, ...],
    per_client: int,
    *,
    cuda: bool,
    wait_variants: tuple[float, ...] = (),
) -> dict[str, Any]:
    """Images/s and latency at each client count against one server; then, for each of ``wait_variants``
    (a batcher max wait in ms), the highest client counts again, to show what the wait does to batching."""
    fields = form(params)
    results: dict[str, Any] = {}
    batcher = engine.batcher
    configured_wait = batcher.max_wait_s
    async with serving(engine) as url:
        for clients in concurrency:
            results[f"c{clients}"] = await _level(engine, url, images, fields, clients, per_client, cuda=cuda)
        try:
            for wait_ms in wait_variants:
                batcher.max_wait_s = wait_ms / 1000
                for clients in concurrency[-2:]:
                    summary = await _level(engine, url, images, fields, clients, per_client, cuda=cuda)
                    results[f"c{clients}-wait{wait_ms:g}ms"] = {**summary, "max_wait_ms": wait_ms}
        finally:
            batcher.max_wait_s = configured_wait
    return results


async def _level(
    engine: Engine,
    url: str,
    images: list[tuple[str, bytes]],
    fields: dict[str, str],
    clients: int,
    per_client: int,
    *,
    cuda: bool,
) -> dict[str, Any]:
    from descry.bench.phases import PhaseResult

    stats = engine.batcher.stats
    batches0, items0 = stats.batches, stats.items
    with MemoryPeak(cuda=cuda) as memory:
        seconds, samples, errors = await asyncio.to_thread(
            asyncio.run, _clients(url, images, fields, clients, per_client)
        )
    summary = PhaseResult(f"http-c{clients}", seconds, samples, memory.as_dict()).summary()
    for key in ("stage_s_per_image", "device_busy", "output_tokens"):
        summary.pop(key, None)
    batches = stats.batches - batches0
    summary["mean_batch_size"] = round((stats.items - items0) / batches, 2) if batches else 0.0
    server = [s.stages["server_total"] for s in samples]
    summary.update(
        clients=clients,
        requests=clients * per_client,
        server_time_p50_s=round(percentile(server, 50), 4),
        errors=len(errors),
        error_examples=errors[:3],
    )
    return summary
