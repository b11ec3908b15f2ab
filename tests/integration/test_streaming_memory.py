"""Streaming a large folder keeps memory flat: sources are read lazily and at most ``concurrency`` images
are decoded and in flight at once, from the source to the sink (issue 17)."""

from __future__ import annotations

import resource
from collections.abc import Iterator

import pytest

from descry import CaptionRequest, Descry, Settings
from descry.engine.pipeline import Engine
from descry.imaging import DecodedImage
from descry.schemas import ImageRef
from tests.conftest import image_bytes
from tests.fakes.echo_backend import EchoBackend

pytestmark = pytest.mark.slow

IMAGES = 10_000


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


async def test_ten_thousand_images_stream_in_bounded_memory(settings: Settings) -> None:
    photo = image_bytes("JPEG", (320, 240))  # 300 KB decoded: holding every image would take about 3 GB
    consumed = 0

    def folder() -> Iterator[bytes]:
        nonlocal consumed
        for _ in range(IMAGES):
            consumed += 1
            yield photo

    async with Descry(settings, engine=Engine(settings, backend=EchoBackend())) as d:
        decoding, most = 0, 0
        load = d.reader.load

        async def counted(ref: ImageRef, target: int | None) -> DecodedImage:
            nonlocal decoding, most
            decoding += 1
            most = max(most, decoding)
            try:
                return await load(ref, target)
            finally:
                decoding -= 1

        d.reader.load = counted  # type: ignore[method-assign]
        done, ahead, baseline = 0, 0, 0.0
        async for result in d.enrich_many(folder(), CaptionRequest(tags=False)):
            assert result.ok, result.error
            done += 1
            ahead = max(ahead, consumed - done)  # read from the source but not yet through to the sink
            if done == 1000:
                baseline = rss_mb()
        grown = rss_mb() - baseline
    assert done == IMAGES
    assert most <= d.concurrency and ahead <= d.concurrency
    assert grown < 100, f"RSS grew {grown:.0f} MB over {IMAGES - 1000} images"
