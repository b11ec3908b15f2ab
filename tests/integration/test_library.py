"""descry as a library: the documented example runs as written, and Descry owns and closes everything."""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from descry import CaptionRequest, Descry, DescryError, Enrichment, ImageRef, Settings, TrustPolicy
from descry.engine.pipeline import Engine
from descry.errors import ModelNotFound
from descry.sinks.pool import SinkPool
from tests.conftest import image_bytes
from tests.fakes.echo_backend import EchoBackend
from tests.tiny.blip import build_tiny_blip

DOC = Path(__file__).parents[2] / "docs" / "library.md"


@pytest.fixture(scope="module")
def tiny_blip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_blip(tmp_path_factory.mktemp("library-blip"))


def doc_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    return next(block for block in blocks if "async with Descry" in block)


def test_the_documented_example_runs_as_written(
    tiny_blip: Path,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "cat.jpg").write_bytes(image_bytes("JPEG", (64, 48)))
    (photos / "dog.png").write_bytes(image_bytes("PNG", (40, 60)))
    (photos / "broken.jpg").write_bytes(b"not an image")
    monkeypatch.setenv("DESCRY_MODEL__NAME", str(tiny_blip))
    monkeypatch.setenv("DESCRY_DATA_DIR", str(tmp_path / "data"))
    exec(compile(doc_example(), str(DOC), "exec"), {"__name__": "__main__"})  # noqa: S102 - the doc's own code
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines].count("cat") == 1
    assert sum(line.startswith("ok:") for line in lines) == 2
    failed = [line for line in lines if line.startswith("failed:")]
    assert len(failed) == 1 and "broken.jpg" in failed[0]


class Recorder:
    """A sink that remembers what it got and whether it was closed."""

    name = "recorder"

    def __init__(self) -> None:
        self.delivered: list[str] = []
        self.closed = False

    async def deliver(self, enrichment: Enrichment, ref: ImageRef) -> None:
        self.delivered.append(ref.name)

    def done(self, ref: ImageRef) -> bool:
        return ref.name in self.delivered

    async def close(self) -> None:
        self.closed = True


def echo_descry(settings: Settings, recorder: Recorder | None = None, **kw: object) -> Descry:
    sinks = SinkPool(settings, {"recorder": recorder}) if recorder is not None else None
    return Descry(settings, engine=Engine(settings, backend=EchoBackend()), sinks=sinks, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("body_raises", [False, True])
async def test_descry_closes_engine_enhancer_client_and_sinks(settings: Settings, body_raises: bool) -> None:
    settings = settings.model_copy(
        update={"enhance": settings.enhance.model_copy(update={"base_url": "http://127.0.0.1:9/v1", "max_retries": 0})}
    )
    recorder = Recorder()
    descry = echo_descry(settings, recorder)
    request = CaptionRequest(enhance=True, sinks=["recorder"])
    with pytest.raises(RuntimeError) if body_raises else contextlib.nullcontext():
        async with descry as d:
            result = await d.enrich(image_bytes("PNG"), request)
            assert result.enrichment is not None and result.delivery == {"recorder": None}
            client = d.enricher.enhancer._client
            assert client is not None and d.engine.ready
            if body_raises:
                raise RuntimeError("the caller's own mistake")
    assert descry.engine.state.status == "stopped"
    assert client._http.is_closed
    assert recorder.closed and recorder.delivered == ["upload-0"]


async def test_enrich_many_isolates_a_bad_image(settings: Settings, tmp_path: Path) -> None:
    good = tmp_path / "good.jpg"
    good.write_bytes(image_bytes("JPEG", (30, 20)))
    sources: list[object] = [image_bytes("PNG", (20, 10)), b"not an image", good, str(tmp_path / "missing.jpg")]
    async with echo_descry(settings) as d:
        results = [r async for r in d.enrich_many(sources, CaptionRequest(tags=False))]  # type: ignore[arg-type]
    by_index = {r.index: r for r in results}
    assert sorted(by_index) == [0, 1, 2, 3]
    assert [by_index[i].ok for i in range(4)] == [True, False, True, False]
    assert by_index[1].error is not None and by_index[1].error.code == "unsupported_format"
    assert by_index[3].error is not None and by_index[3].error.code == "not_found"
    assert by_index[2].enrichment is not None and by_index[2].enrichment.caption.startswith("30x20")


class Unloadable(EchoBackend):
    def load(self) -> None:
        raise ModelNotFound("no such model", hint="pick another")


async def test_a_model_that_cannot_load_ends_the_run_with_that_error(settings: Settings) -> None:
    descry = Descry(settings, engine=Engine(settings, backend=Unloadable()))
    seen = []
    with pytest.raises(ModelNotFound):
        async with descry as d:
            async for result in d.enrich_many([b"junk", *[image_bytes("PNG")] * 5], CaptionRequest(tags=False)):
                seen.append(result)
    assert [r.ok for r in seen] in ([], [False])  # at most the undecodable image, never the good ones


async def test_unknown_sink_is_refused_before_any_image_is_read(settings: Settings) -> None:
    async with echo_descry(settings) as d:
        with pytest.raises(DescryError) as caught:
            await d.enrich(b"not read", CaptionRequest(sinks=["nowhere"]))
        assert caught.value.code == "invalid_input"
        assert d.engine.state.status == "stopped"


@pytest.fixture
def trickle() -> Iterator[str]:
    """An image server that sends one JPEG slowly (about 1.5 s), a few bytes at a time."""
    jpeg = image_bytes("JPEG", (50, 40))

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(jpeg)))
            self.end_headers()
            step = max(1, len(jpeg) // 15)
            for start in range(0, len(jpeg), step):
                self.wfile.write(jpeg[start : start + step])
                self.wfile.flush()
                time.sleep(0.1)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/slow.jpg"
    server.shutdown()
    server.server_close()


async def test_a_slow_url_does_not_delay_an_upload(settings: Settings, trickle: str) -> None:
    settings = settings.model_copy(update={"decode_threads": 1})
    policy = TrustPolicy(private_urls=True)
    order: list[str] = []
    async with echo_descry(settings, policy=policy) as d:
        started = time.perf_counter()
        async for result in d.enrich_many([trickle, trickle, image_bytes("PNG")], CaptionRequest(tags=False)):
            assert result.ok, result.error
            order.append(result.ref.kind.value)
            if result.ref.kind.value == "upload":
                assert time.perf_counter() - started < 1.0
    assert order == ["upload", "url", "url"]


async def test_enrich_one_raises_the_images_error(settings: Settings) -> None:
    async with echo_descry(settings, policy=TrustPolicy(paths="none")) as d:
        with pytest.raises(DescryError) as caught:
            await d.enrich("/etc/hostname")
        assert caught.value.code == "forbidden_source"
        assert await asyncio.wait_for(d.enrich(image_bytes("PNG")), 10)
