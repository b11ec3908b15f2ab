"""The engine: one loaded model and the dynamic batcher; nothing else.

Images arrive decoded (``descry.sources.SourceReader`` reads and decodes them); the library
object ``descry.Descry`` starts and stops the engine for every face.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from descry.backends.base import Backend, Generation, ModelSpec, Prompted
from descry.backends.registry import create_backend
from descry.config import Settings
from descry.engine.batcher import DynamicBatcher
from descry.errors import DescryError, ModelLoadFailed, ModelNotReady, describe_error

log = logging.getLogger("descry.engine")

DEFAULT_TARGET_PIXELS = 1024 * 1024


def target_pixels_for(spec: ModelSpec) -> int:
    """How many pixels decoding keeps for a model: what it can use, with headroom."""
    return int(spec.options.get("max_pixels") or DEFAULT_TARGET_PIXELS)


@dataclass
class EngineState:
    """What readiness checks report."""

    status: str = "stopped"  # stopped | loading | ready | failed
    error: str | None = None
    error_code: str | None = None
    load_seconds: float | None = None
    cause: BaseException | None = field(default=None, repr=False)

    def load_failure(self) -> ModelLoadFailed:
        """What a request gets after the load failed: the cause's message and fix, code model_load_failed."""
        cause = self.cause
        if isinstance(cause, DescryError):
            text = f"{cause.source}: {cause.message}" if cause.source else cause.message
            return ModelLoadFailed(f"the model failed to load: {text}", hint=cause.hint)
        return ModelLoadFailed(
            f"the model failed to load: {self.error}", hint="see the server log, fix the cause and restart"
        )


class Engine:
    """Loads the configured model once and serves batched generations to many callers."""

    def __init__(self, settings: Settings, backend: Backend | None = None) -> None:
        self.settings = settings
        self.backend = backend or create_backend(settings.model, test_mode=settings.test_mode)
        self.state = EngineState()
        self._batcher: DynamicBatcher | None = None

    @property
    def ready(self) -> bool:
        return self.state.status == "ready"

    @property
    def batcher(self) -> DynamicBatcher:
        if self._batcher is None:
            if self.state.status == "failed":
                raise self.state.load_failure()
            raise ModelNotReady(f"the model is {self.state.status}", hint="wait for /health to report ready")
        return self._batcher

    @property
    def batch_size(self) -> int:
        """Images per device batch on the device the model is (or will be) on."""
        if not self.backend.capabilities.batching:
            return 1
        if self.backend.device == "remote":
            return self.settings.model.batch_size or self.settings.model.max_concurrency
        return self.settings.model.batch_size_for(self.backend.device)

    @property
    def target_pixels(self) -> int:
        """How many pixels decoding keeps for the loaded model (``target_pixels_for``)."""
        return target_pixels_for(self.backend.spec)

    async def start(self, *, on_batch: Callable[[int, float], None] | None = None) -> None:
        """Load the model on a thread and start batching; raises the load error."""
        self.state = EngineState(status="loading")
        t0 = time.perf_counter()
        try:
            await asyncio.to_thread(self.backend.load)
        except Exception as exc:
            code = describe_error(exc)[0]
            self.state = EngineState(status="failed", error=str(exc), error_code=code, cause=exc)
            raise
        self.state = EngineState(status="ready", load_seconds=time.perf_counter() - t0)
        log.info("model %s loaded in %.1fs", self.backend.model_name, self.state.load_seconds)
        batching = self.settings.batching
        self._batcher = DynamicBatcher(
            self.backend,
            max_batch_size=self.batch_size,
            max_wait_s=batching.max_wait_ms / 1000,
            max_queue=batching.max_queue,
            inflight_batches=batching.inflight_batches,
            adaptive_wait=batching.adaptive_wait,
            on_batch=on_batch,
        )
        await self._batcher.start()

    async def stop(self) -> None:
        if self._batcher:
            await self._batcher.stop()
            self._batcher = None
        await asyncio.to_thread(self.backend.close)
        self.state = EngineState(status="stopped")

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def generate(self, item: Prompted) -> Generation:
        """One image through the batcher; concurrent calls share device batches."""
        return await self.batcher.submit(item)
