"""/docs and /redoc reference only assets that descry serves itself (no CDN), over the in-process app."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import httpx

from descry.api.security import hash_key
from descry.config import ApiKey, Settings
from tests.api_helpers import api_settings, serve

# src/href attributes, redoc's spec-url, and Swagger UI's `url: '...'` option
URL_ATTRIBUTES = re.compile(r"""(?:\b(?:src|href|spec-url)=|\burl:\s*)["']([^"']+)["']""")
CONTENT_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/", ".json": "application/json"}
PAGES = ("/docs", "/redoc")


def page_urls(html: str) -> list[str]:
    return URL_ATTRIBUTES.findall(html)


async def check_page(client: httpx.AsyncClient, page: str, prefix: str = "") -> list[str]:
    """The page is HTML whose every URL is a same-origin path that the app serves with the right type."""
    response = await client.get(page)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert not re.search(r"(?:https?:)?//", response.text), "an absolute URL in the page"
    # and the browser is told to load nothing from elsewhere
    assert "default-src 'self'" in response.headers["content-security-policy"]
    urls = page_urls(response.text)
    kinds = {urlsplit(url).path.rsplit(".", 1)[-1] for url in urls}
    assert {"js", "json"} <= kinds, urls  # the UI's script and the schema it renders
    for url in urls:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc and url.startswith(prefix + "/"), url
        asset = await client.get(url)  # as the browser asks for it, prefix included
        assert asset.status_code == 200, url
        assert asset.content, url
        suffix = "." + parts.path.rsplit(".", 1)[-1]
        assert CONTENT_TYPES[suffix] in asset.headers["content-type"], (url, asset.headers["content-type"])
    return urls


async def test_docs_pages_reference_only_assets_the_server_serves(settings: Settings) -> None:
    async with serve(api_settings(settings)) as (client, _app):
        swagger = await check_page(client, "/docs")
        redoc = await check_page(client, "/redoc")
        schema = (await client.get("/openapi.json")).json()
    assert any(url.endswith(".css") for url in swagger)
    # the doc pages and their assets are not API operations
    assert not [path for path in schema["paths"] if path.startswith(("/docs", "/redoc"))]
    assert {"/health", "/v1/caption"} <= set(schema["paths"])
    assert redoc != swagger


async def test_docs_follow_the_root_path(settings: Settings) -> None:
    async with serve(api_settings(settings, server={"root_path": "/descry"})) as (client, _app):
        for page in PAGES:
            await check_page(client, page, prefix="/descry")


async def test_docs_need_no_key_when_keys_are_configured(settings: Settings) -> None:
    key = ApiKey(name="ops", sha256=hash_key("dsk_test"), scopes=["caption"])
    config = api_settings(settings, security={"api_keys": [key], "client_rate": 0.0})
    async with serve(config, ready=False) as (client, _app):
        assert (await client.get("/v1/models")).status_code == 401
        for page in PAGES:
            await check_page(client, page)


async def test_docs_off_serves_none_of_it(settings: Settings) -> None:
    async with serve(api_settings(settings)) as (client, _app):
        urls = {url for page in PAGES for url in await check_page(client, page)}
    async with serve(api_settings(settings, server={"docs": False})) as (client, _app):
        for path in sorted({*PAGES, *urls, "/docs/oauth2-redirect"}):
            assert (await client.get(path)).status_code == 404, path
