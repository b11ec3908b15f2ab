"""The web page in a real headless browser (Debian's chromium via Playwright) against a real server."""

from __future__ import annotations

import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from descry.config import Settings
from descry.engine.pipeline import Engine
from tests.conftest import image_bytes
from tests.fakes.echo_backend import EchoBackend

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT = Path("/tmp/descry-page.png")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("chromium") is None and not Path(CHROMIUM).exists(),
        reason="chromium is not installed (apt-get install chromium; scripts/test.sh does it)",
    ),
]

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is missing: pip install -e '.[dev]'")
uvicorn = pytest.importorskip("uvicorn", reason="the server extra is missing: pip install -e '.[server]'")


class _Server:
    """A real uvicorn server on a free local port, in a background thread."""

    def __init__(self, app: Any) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> _Server:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Server]:
    from descry.api.app import create_app

    root = tmp_path_factory.mktemp("web")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        for name in ("MAX_TOKENS", "TEST_MODE", "VLM_MODEL_ID", "VLM_LOAD_8BIT", "USE_GPT_OSS"):
            mp.delenv(name, raising=False)
        settings = Settings(data_dir=root / "data")
        app = create_app(settings, engine=Engine(settings, backend=EchoBackend()))
        with _Server(app) as running:
            yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def seen_urls() -> list[str]:
    """Every URL the page requests."""
    return []


@pytest.fixture
def page(browser: Any, server: _Server, seen_urls: list[str]) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1200, "height": 1000})
    context.on("request", lambda request: seen_urls.append(request.url))
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto(server.url)
    yield page
    context.close()


@pytest.fixture
def images(tmp_path: Path) -> dict[str, Path]:
    """Three real images of different sizes and one file that only pretends to be a JPEG."""
    files = {
        "harbour.jpg": image_bytes("JPEG", (64, 48)),
        "meadow.png": image_bytes("PNG", (80, 60), (40, 160, 60)),
        "night.webp": image_bytes("WEBP", (96, 40), (20, 20, 90)),
        "broken.jpg": image_bytes("JPEG", (200, 200))[:200],
    }
    out = {}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        out[name] = tmp_path / name
    return out


def _card(page: Any, name: str, list_id: str = "results") -> Any:
    return page.locator(f"#{list_id} li.card[data-name='{name}']")


def test_page_is_served_with_its_assets_and_reports_the_model_ready(
    page: Any, server: _Server, seen_urls: list[str]
) -> None:
    assert page.title() == "descry"
    sync_api.expect(page.locator("#health")).to_have_attribute("data-status", "ready")
    sync_api.expect(page.locator("#health-text")).to_contain_text("ready")
    for asset in ("static/app.js", "static/style.css"):
        assert page.request.get(server.url + asset).ok
    # everything is served by descry itself: no CDN, nothing outside the server
    assert {server.url + "static/app.js", server.url + "static/style.css", server.url + "health"} <= set(seen_urls)
    assert all(url.startswith((server.url, "data:")) for url in seen_urls), seen_urls
    # the file input is keyboard reachable through its label, the options are labelled
    assert page.get_by_label("Drop images here").get_attribute("type") == "file"
    for label in ("Prompt", "Detail", "Max tokens", "Task", "Tags"):
        assert page.get_by_label(label, exact=True).count() == 1
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "files"


def test_dropping_files_on_the_drop_zone_chooses_them(page: Any) -> None:
    page.locator("#dropzone").dispatch_event(
        "drop",
        {
            "dataTransfer": page.evaluate_handle(
                """() => { const dt = new DataTransfer();
                   dt.items.add(new File(["x"], "one.png", {type: "image/png"}));
                   dt.items.add(new File(["y"], "two.jpg", {type: "image/jpeg"}));
                   return dt; }"""
            )
        },
    )
    sync_api.expect(page.locator("#selection")).to_have_text("2 images chosen: one.png, two.jpg.")
    assert page.locator("#files").evaluate("input => input.files.length") == 2
    sync_api.expect(page.get_by_role("button", name="Caption each image")).to_be_enabled()


def test_a_busy_server_is_retried_after_the_time_it_asks(page: Any, images: dict[str, Path]) -> None:
    refusals: list[str] = []

    def busy_once(route: Any) -> None:
        if refusals:
            route.continue_()
            return
        refusals.append(route.request.url)
        body = '{"error": {"code": "overloaded", "message": "the queue is full"}}'
        route.fulfill(status=429, headers={"Retry-After": "1"}, content_type="application/json", body=body)

    page.route("**/v1/caption", busy_once)
    page.set_input_files("#files", str(images["meadow.png"]))
    page.get_by_role("button", name="Caption each image").click()
    card = _card(page, "meadow.png")
    sync_api.expect(card.locator(".state")).to_contain_text("retrying")
    sync_api.expect(card).to_have_attribute("data-state", "done")
    sync_api.expect(card.locator(".caption")).to_contain_text("80x60")
    assert len(refusals) == 1


def test_each_image_shows_its_caption_tags_trace_or_error(page: Any, images: dict[str, Path]) -> None:
    page.set_input_files("#files", [str(images[n]) for n in ("harbour.jpg", "meadow.png", "broken.jpg")])
    sync_api.expect(page.locator("#selection")).to_contain_text("3 images chosen")
    page.get_by_text("Options", exact=True).click()
    page.get_by_label("Prompt", exact=True).fill("boats moored in a harbour at dawn")
    page.get_by_role("button", name="Caption each image").click()

    good = _card(page, "harbour.jpg")
    sync_api.expect(good).to_have_attribute("data-state", "done")
    # EchoBackend answers "WxH prompt": the size proves which file it saw, the prompt that options are sent
    sync_api.expect(good.locator(".caption")).to_contain_text("64x48")
    sync_api.expect(good.locator(".caption")).to_contain_text("harbour")
    tags = good.locator(".tags li.tag")
    assert tags.count() >= 1
    assert all(tags.nth(i).get_attribute("data-source") for i in range(tags.count()))
    assert good.locator(".trace-steps li").count() >= 1
    assert good.locator(".thumb").get_attribute("src").startswith("blob:")
    sync_api.expect(good.locator(".meta")).to_contain_text("64×48 JPEG")
    sync_api.expect(_card(page, "meadow.png").locator(".caption")).to_contain_text("80x60")

    bad = _card(page, "broken.jpg")
    sync_api.expect(bad).to_have_attribute("data-state", "error")
    error = bad.locator(".error")
    sync_api.expect(error).to_be_visible()
    assert error.get_attribute("data-code") in {"corrupt_image", "unsupported_format"}
    assert "broken.jpg" in error.inner_text() and len(error.inner_text()) > 30
    sync_api.expect(bad).to_have_class(re.compile(r"\bno-preview\b"))
    assert bad.locator(".caption").inner_text() == ""
    assert page.locator("#results li.card").count() == 3


def test_batch_job_progress_reaches_completion_with_every_result(page: Any, images: dict[str, Path]) -> None:
    names = ["harbour.jpg", "meadow.png", "night.webp"]
    page.set_input_files("#files", [str(images[n]) for n in names])
    page.get_by_role("button", name="Run as a batch job").click()

    batch = page.locator("#batch")
    sync_api.expect(batch).to_be_visible()
    sync_api.expect(page.locator("#batch-results li.card")).to_have_count(3)
    progress = page.locator("#batch-progress")
    assert progress.evaluate("p => [p.value, p.max]") == [3, 3]
    sync_api.expect(page.locator("#batch-count")).to_have_text("3 of 3 images")
    assert batch.get_attribute("data-task-id")
    assert batch.get_attribute("data-state") in {"completed", "done", "finished", "success"}
    for name, size in zip(names, ["64x48", "80x60", "96x40"], strict=True):
        card = _card(page, name, "batch-results")
        sync_api.expect(card).to_have_attribute("data-state", "done")
        sync_api.expect(card.locator(".caption")).to_contain_text(size)

    page.set_input_files("#files", [str(images["harbour.jpg"]), str(images["broken.jpg"])])
    page.get_by_text("Options", exact=True).click()
    page.get_by_label("Prompt", exact=True).fill("boats moored in a harbour at dawn")
    page.get_by_role("button", name="Caption each image").click()
    sync_api.expect(page.locator("#results li.card[data-state='pending']")).to_have_count(0)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
