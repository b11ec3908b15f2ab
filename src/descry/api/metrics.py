"""Prometheus metrics, one registry per app (no process globals)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

__all__ = ["CONTENT_TYPE_LATEST", "ApiMetrics"]


class ApiMetrics:
    """Request, batching and model metrics for one app."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "descry_http_requests",
            "HTTP requests by route, method and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "descry_http_request_duration_seconds",
            "HTTP request latency",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "descry_batch_size", "images per device batch", buckets=BATCH_BUCKETS, registry=r
        )
        self.batch_seconds = Histogram(
            "descry_batch_device_seconds", "device time per batch", buckets=LATENCY_BUCKETS, registry=r
        )
        self.queue_depth = Gauge("descry_queue_depth", "images waiting for the model", registry=r)
        self.images = Counter("descry_images_processed", "images captioned successfully", registry=r)
        self.failures = Counter(
            "descry_failures", "failed requests and images by error code", ["code"], registry=r
        )
        self.model_load = Gauge("descry_model_load_seconds", "how long the model took to load", registry=r)
        self.model_ready = Gauge("descry_model_ready", "1 when the model is loaded and serving", registry=r)

    def track_queue(self, depth: Callable[[], int]) -> None:
        """Read the queue depth when scraped."""
        self.queue_depth.set_function(lambda: float(depth()))

    def on_batch(self, size: int, device_seconds: float) -> None:
        """The engine's per-batch callback."""
        self.batch_size.observe(size)
        self.batch_seconds.observe(device_seconds)

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route=route, method=method, status=str(status)).inc()
        self.latency.labels(route=route, method=method).observe(seconds)

    def image_done(self, count: int = 1) -> None:
        self.images.inc(count)

    def failure(self, code: str) -> None:
        self.failures.labels(code=code).inc()

    def model_state(self, ready: bool, load_seconds: float | None) -> None:
        self.model_ready.set(1 if ready else 0)
        if load_seconds is not None:
            self.model_load.set(load_seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
