"""/docs (Swagger UI) and /redoc in a real headless browser with every host but descry's blocked.

The server and browser are test_web_page's fixtures (an in-process uvicorn over the EchoBackend and
Debian's chromium). Each request to another host is recorded and aborted at the network layer, as
on a machine with no internet; the pages must render from what descry serves itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.e2e import test_web_page as web

# test_web_page's marks and fixtures, reused: the slow mark, skipped without chromium or playwright
pytestmark = web.pytestmark
browser = web.browser
server = web.server
sync_api = web.sync_api

METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


@dataclass
class Traffic:
    """What one browser context asked for."""

    origin: str
    requests: list[str] = field(default_factory=list)
    sent_outside: list[str] = field(default_factory=list)  # reached the network layer (and were aborted)
    failed: dict[str, str] = field(default_factory=dict)  # url -> failure
    statuses: dict[str, int] = field(default_factory=dict)  # url -> last status

    def is_outside(self, url: str) -> bool:
        parts = urlsplit(url)
        return parts.scheme not in ("data", "blob") and f"{parts.scheme}://{parts.netloc}" != self.origin

    def own_paths(self) -> set[str]:
        """The paths asked of descry."""
        return {urlsplit(url).path for url in self.requests if url.startswith(self.origin + "/")}

    def check_self_contained(self) -> None:
        """Nothing left for another host; every request to descry was answered 200."""
        assert self.sent_outside == []
        outside = [url for url in self.requests if self.is_outside(url)]
        # a page may name another host (ReDoc's attribution logo), but its Content-Security-Policy
        # refuses the load inside the browser: the request is never sent
        assert all(self.failed.get(url) == "csp" for url in outside), (outside, self.failed)
        own = [url for url in self.requests if url.startswith(self.origin + "/")]
        assert own and all(self.statuses.get(url) == 200 for url in own), (own, self.statuses, self.failed)


@pytest.fixture
def offline(browser: Any, server: web._Server) -> Iterator[tuple[Any, Traffic]]:
    """A page whose requests to any host but the server are aborted, and the traffic it made."""
    parts = urlsplit(server.url)
    traffic = Traffic(origin=f"{parts.scheme}://{parts.netloc}")

    def route(handled: Any) -> None:
        url = handled.request.url
        if traffic.is_outside(url):
            traffic.sent_outside.append(url)
            handled.abort("internetdisconnected")
        else:
            handled.continue_()

    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    context.route("**/*", route)
    context.on("request", lambda request: traffic.requests.append(request.url))
    context.on("requestfailed", lambda request: traffic.failed.__setitem__(request.url, request.failure or ""))
    context.on("response", lambda response: traffic.statuses.__setitem__(response.url, response.status))
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page, traffic
    context.close()


def _operations(page: Any, server: web._Server) -> list[tuple[str, str, str]]:
    """(path, method, operationId) of every operation in the served schema."""
    schema = page.request.get(server.url + "openapi.json").json()
    return [
        (path, method, op.get("operationId", ""))
        for path, item in schema["paths"].items()
        for method, op in item.items()
        if method in METHODS
    ]


def test_swagger_ui_renders_every_operation_offline(offline: tuple[Any, Traffic], server: web._Server) -> None:
    page, traffic = offline
    page.goto(server.url + "docs")
    operations = _operations(page, server)
    assert len(operations) > 5
    blocks = page.locator(".swagger-ui .opblock")
    sync_api.expect(blocks).to_have_count(len(operations))
    sync_api.expect(page.locator(".swagger-ui .opblock [data-path='/health']").first).to_be_visible()
    assert page.locator(".swagger-ui .opblock-get").count() == sum(m == "get" for _, m, _ in operations)
    assert page.locator(".swagger-ui .errors-wrapper").count() == 0
    page.wait_for_load_state("networkidle")
    traffic.check_self_contained()
    own = traffic.own_paths()
    assert {".js", ".css"} <= {path[path.rfind(".") :] for path in own}, own
    assert "/openapi.json" in own


def test_redoc_renders_its_menu_of_operations_offline(offline: tuple[Any, Traffic], server: web._Server) -> None:
    page, traffic = offline
    page.goto(server.url + "redoc")
    operations = _operations(page, server)
    menu = page.locator("[role=menu]").first
    sync_api.expect(menu).to_be_visible()
    items = menu.locator("li[data-item-id*='operation/']")
    sync_api.expect(items).to_have_count(len(operations))
    health = next(op_id for path, method, op_id in operations if (path, method) == ("/health", "get"))
    section = page.locator(f"[data-section-id$='operation/{health}']").first
    sync_api.expect(section).to_be_attached()
    page.wait_for_load_state("networkidle")
    traffic.check_self_contained()
    own = traffic.own_paths()
    assert any(path.endswith(".js") for path in own) and "/openapi.json" in own, own
