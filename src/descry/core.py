"""``Descry``: the one library object every face calls. It owns the source reader, the engine, the
enricher (with the enhancer's HTTP client) and the sinks, and closes them all.

    async with Descry(settings) as d:
        result = await d.enrich("photo.jpg", CaptionRequest())
        async for result in d.enrich_many(["a.jpg", "b.png"], CaptionRequest()):
            ...

Per image: read and decode (``SourceReader``, under the face's ``TrustPolicy``) → start the model
if it has not started → enrich → deliver to the request's sinks. ``enrich`` raises the image's
error; ``enrich_many`` yields a ``Result`` per image *in completion order* (``result.ref`` and
``result.index`` say which one), a bad image as a result with its error, and raises only when the
model cannot load. ``enrich_decoded`` is the one second way in, for callers that decode in a stage
of their own (the Ray pipeline's decode tasks).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from descry.backends.base import Generation, Prompted
from descry.config import Settings
from descry.engine.pipeline import Engine
from descry.enrich.enhance import Enhancer
from descry.enrich.enricher import Enricher
from descry.errors import describe_error
from descry.imaging import DecodedImage
from descry.schemas import (
    CaptionRequest,
    Enrichment,
    FieldChange,
    GenerationParams,
    ImageRef,
    ItemError,
    SourceKind,
)
from descry.sinks.pool import SinkPool
from descry.sources import IMAGE_GLOBS, SourceReader, TrustPolicy, is_s3, is_url, path_ref, upload_ref

Source = ImageRef | str | Path | bytes


@dataclass
class Result:
    """One image's outcome: its Enrichment and where it was delivered, or the error that stopped it.

    ``delivery`` maps each sink to None (delivered) or the error message; ``index`` is the image's
    position in the sources given to ``enrich_many``; ``changes``: a dry run's report (nothing delivered).
    """

    ref: ImageRef
    enrichment: Enrichment | None = None
    delivery: dict[str, str | None] = field(default_factory=dict)
    error: ItemError | None = None
    index: int = 0
    changes: list[FieldChange] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class _ModelFailed(Exception):
    """The model could not start: ends an ``enrich_many`` run with the cause."""


class Descry:
    """Reads, captions, enriches and delivers images; ``async with`` closes everything it owns.

    ``policy`` is what callers may read (default: the local user's, ``TrustPolicy.local``).
    With ``autostart`` (the default) the model loads when the first image has decoded; a server
    passes False, calls ``start()`` itself and answers ``ModelNotReady`` until it is ready.
    An ``engine`` passed in that is already started is left running on close.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        policy: TrustPolicy | None = None,
        engine: Engine | None = None,
        enhancer: Enhancer | None = None,
        sinks: SinkPool | None = None,
        autostart: bool = True,
    ) -> None:
        self.settings = settings if settings is not None else Settings()
        self.policy = policy or TrustPolicy.local(self.settings.sources)
        self.engine = engine or Engine(self.settings)
        self.reader = SourceReader(self.settings, self.policy)
        self.enricher = Enricher(self.engine, self.settings, enhancer=enhancer)
        self.sinks = sinks or SinkPool(self.settings)
        self.autostart = autostart
        self._start_lock = asyncio.Lock()
        self._started_engine = False
        self._load_error: BaseException | None = None  # why the model could not load, as first raised
        self._closed = False

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Descry:
        await self.open()
        return self

    async def open(self) -> None:
        """Start the configured network sinks (the webhook's outbox dispatcher), so what an earlier
        process left in the outbox is sent now, without new work; ``async with`` calls it."""
        await self.sinks.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def ready(self) -> bool:
        return self.engine.ready

    @property
    def model_name(self) -> str:
        return self.engine.backend.model_name

    @property
    def concurrency(self) -> int:
        """Images in flight in ``enrich_many``: enough to fill the batches being prepared and the one running."""
        return max(2, self.engine.batch_size * (self.settings.batching.inflight_batches + 1))

    async def start(self, *, on_batch: Callable[[int, float], None] | None = None) -> None:
        """Load the model now (once); raises why it cannot load."""
        async with self._start_lock:
            if self.engine.state.status == "stopped":
                self._started_engine = True
                try:
                    await self.engine.start(on_batch=on_batch)
                except BaseException as exc:
                    self._load_error = exc
                    raise
            elif self.engine.state.status == "failed":
                raise self.engine.state.load_failure()

    async def _ensure_model(self) -> None:
        if self.autostart and not self.engine.ready:
            await self.start()

    async def close(self) -> None:
        """Close the sinks, the enhancer's client, the reader's pools and the engine this object started."""
        if self._closed:
            return
        self._closed = True
        try:
            await self.sinks.close()
        finally:
            try:
                await self.enricher.enhancer.aclose()
            finally:
                self.reader.close()
                if self._started_engine and self.engine.state.status != "stopped":
                    await self.engine.stop()

    # -- inputs ---------------------------------------------------------------------------

    def ref_for(self, source: Source, *, index: int = 0) -> ImageRef:
        """An ImageRef for one source: a ref, upload bytes, a file path, an http(s) URL or an S3 URI."""
        if isinstance(source, ImageRef):
            return source
        if isinstance(source, bytes | bytearray):
            return upload_ref(f"upload-{index}", bytes(source))
        text = str(source)
        if is_url(text) or is_s3(text):
            return ImageRef(kind=SourceKind.url if is_url(text) else SourceKind.s3, name=text, uri=text)
        return path_ref(Path(text).expanduser())

    async def expand(
        self, inputs: Iterable[str], *, recursive: bool = True, globs: tuple[str, ...] = IMAGE_GLOBS
    ) -> list[ImageRef]:
        """Files, folders, URLs and S3 URIs or prefixes as ImageRefs, as this object's policy allows."""
        return await asyncio.to_thread(self.reader.expand, list(inputs), recursive=recursive, globs=globs)

    def sink_names(
        self, request: CaptionRequest, sinks: list[str] | None = None, *, in_reply: bool = True
    ) -> list[str]:
        """The sinks a request delivers to, by the one rule (``SinkPool.names_for``); ``sinks`` overrides
        the request. ``in_reply``: the caller receives the result itself. Unknown names raise InputError."""
        if sinks is not None:
            return self.sinks.check(sinks)
        return self.sinks.names_for(request.sinks, asset_id=request.asset_id, in_reply=in_reply)

    # -- one image ------------------------------------------------------------------------

    async def enrich(
        self,
        source: Source,
        request: CaptionRequest | None = None,
        *,
        sinks: list[str] | None = None,
        in_reply: bool = True,
    ) -> Result:
        """Read, decode, enrich and deliver one image; raises its error (a ``DescryError`` on purpose)."""
        request = request or CaptionRequest()
        self.enricher.check(request)
        ref = self.ref_for(source)
        names = self.sink_names(request, sinks, in_reply=in_reply)
        image, decode_s = await self._decode(ref)
        await self._ensure_model()
        return await self._finish(ref, request, image, names, decode_s=decode_s)

    async def enrich_decoded(
        self,
        ref: ImageRef,
        image: DecodedImage,
        request: CaptionRequest | None = None,
        *,
        sinks: list[str] | None = None,
    ) -> Result:
        """Enrich an image the caller already read and decoded (Ray's decode stage); raises its error."""
        request = request or CaptionRequest()
        names = self.sink_names(request, sinks)
        await self._ensure_model()
        return await self._finish(ref, request, image, names)

    async def generate(
        self,
        source: Source,
        prompt: str | None = None,
        *,
        task: str | None = None,
        params: GenerationParams | None = None,
        options: dict[str, Any] | None = None,
    ) -> Generation:
        """One image and a prompt (or a task) straight through the engine's batcher, without the caption
        agent, tags or sinks (what a chat-style caller asks for); raises the image's error."""
        ref = self.ref_for(source)
        image, decode_s = await self._decode(ref)
        await self._ensure_model()
        params = params or GenerationParams()
        item = Prompted(image.image, prompt=prompt, task=task, params=params, options=dict(options or {}))
        generation = await self.engine.generate(item)
        generation.timings["decode_s"] = decode_s
        return generation

    async def _decode(self, ref: ImageRef) -> tuple[DecodedImage, float]:
        t0 = time.perf_counter()
        image = await self.reader.load(ref, self.engine.target_pixels)
        return image, time.perf_counter() - t0

    async def _finish(
        self, ref: ImageRef, request: CaptionRequest, image: DecodedImage, names: list[str], *, decode_s: float = 0.0
    ) -> Result:
        enrichment = await self.enricher.enrich(ref, request, image, decode_s=decode_s)
        if request.dry_run:
            return Result(ref, enrichment, changes=await self.sinks.plan(names, enrichment, ref, policy=request.policy))
        delivery = await self.sinks.deliver(names, enrichment, ref, policy=request.policy)
        return Result(ref, enrichment, delivery)

    # -- many images ----------------------------------------------------------------------

    async def enrich_many(
        self,
        sources: Iterable[Source],
        request: CaptionRequest | None = None,
        *,
        sinks: list[str] | None = None,
        in_reply: bool = True,
        concurrency: int | None = None,
    ) -> AsyncIterator[Result]:
        """Every source, ``concurrency`` at a time, yielded as each finishes (completion order).

        A bad image yields a result with its error; a model that cannot load raises that error and
        ends the run. The model loads only once the first image has decoded. Leaving the loop early
        is safe inside ``contextlib.aclosing(d.enrich_many(...))``, which cancels what still runs.
        """
        request = request or CaptionRequest()
        self.enricher.check(request)  # what the model cannot do for the request fails the run before any work
        names = self.sink_names(request, sinks, in_reply=in_reply)
        limit = concurrency or self.concurrency
        queued = iter(enumerate(sources))
        running: set[asyncio.Task[Result]] = set()
        try:
            while True:
                while len(running) < limit and (item := next(queued, None)) is not None:
                    running.add(asyncio.create_task(self._one(item[0], item[1], request, names)))
                if not running:
                    return
                finished, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in sorted(finished, key=_index_of):
                    if isinstance(task.exception(), _ModelFailed):
                        raise self._load_error or _cause(task.exception())
                    yield task.result()
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    async def _one(self, index: int, source: Source, request: CaptionRequest, names: list[str]) -> Result:
        ref = ImageRef(kind=SourceKind.upload, name=f"source-{index}")
        try:
            ref = self.ref_for(source, index=index)
            image, decode_s = await self._decode(ref)
        except Exception as exc:
            return _failed(ref, exc, index)
        try:
            await self._ensure_model()
        except Exception as exc:
            raise _ModelFailed() from exc
        try:
            result = await self._finish(ref, request, image, names, decode_s=decode_s)
        except Exception as exc:  # each image fails alone
            return _failed(ref, exc, index)
        result.index = index
        return result


def _failed(ref: ImageRef, exc: BaseException, index: int) -> Result:
    code, message = describe_error(exc)
    return Result(ref, error=ItemError(name=ref.name, code=code, message=message), index=index)


def _cause(exc: BaseException | None) -> BaseException:
    assert exc is not None and exc.__cause__ is not None
    return exc.__cause__


def _index_of(task: asyncio.Task[Result]) -> int:
    if task.exception() is not None:
        return -1
    return task.result().index


__all__ = ["Descry", "Result", "Source"]
