"""``/docs`` (Swagger UI) and ``/redoc`` that work with no internet.

FastAPI's own doc pages load Swagger UI and ReDoc from a CDN (and a favicon and Google Fonts from
elsewhere), so a server without internet shows blank pages. The same pages are built here with
every asset URL under ``/docs/assets``, served from the copy of swagger-ui and redoc that the
``fastapi-offline`` package ships (a dependency of the server extra). Like FastAPI's pages they
need no API key; with ``settings.server.docs`` off none of these routes exist.
"""

from __future__ import annotations

import base64
import hashlib
import re
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from descry.errors import ConfigError, MissingDependency

DOCS_URL = "/docs"
REDOC_URL = "/redoc"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
ASSETS_URL = "/docs/assets"
# the files of fastapi_offline/static that the pages load
SWAGGER_JS = "swagger-ui-bundle.js"
SWAGGER_CSS = "swagger-ui.css"
REDOC_JS = "redoc.standalone.js"
FAVICON = "favicon.png"
ASSETS = (SWAGGER_JS, SWAGGER_CSS, REDOC_JS, FAVICON)
# no badge from the online validator (validator.swagger.io) on the Swagger UI page
SWAGGER_PARAMETERS = {"validatorUrl": None}
# the pages may load nothing from elsewhere: this also stops ReDoc's logo from cdn.redoc.ly
# (ReDoc then leaves it out); inline scripts are allowed by hash, ReDoc's worker runs from a blob
CSP = (
    "default-src 'self'; script-src {scripts}; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'self'"
)
INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def assets_dir() -> Path:
    """The packaged swagger-ui and redoc files (``fastapi_offline/static``)."""
    try:
        static = Path(str(resources.files("fastapi_offline").joinpath("static")))
    except ModuleNotFoundError as exc:  # the server extra brings it; DESCRY_SERVER__DOCS=false needs none
        raise MissingDependency("fastapi-offline", "server") from exc
    missing = [name for name in ASSETS if not (static / name).is_file()]
    if missing:
        raise ConfigError(
            f"the fastapi-offline package in {static} lacks {', '.join(missing)}",
            hint="reinstall it: pip install -c constraints.txt --force-reinstall fastapi-offline",
        )
    return static


def offline(page: HTMLResponse) -> HTMLResponse:
    """``page`` with a Content-Security-Policy that lets it load only from this server."""
    scripts = ["'self'"] + [
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in INLINE_SCRIPT.findall(bytes(page.body).decode())
    ]
    page.headers["Content-Security-Policy"] = CSP.format(scripts=" ".join(scripts))
    return page


def install_docs(app: FastAPI) -> None:
    """Swagger UI at ``/docs``, ReDoc at ``/redoc`` and their assets; the schema is ``app.openapi_url``."""
    openapi_url = app.openapi_url or "/openapi.json"
    app.mount(ASSETS_URL, StaticFiles(directory=assets_dir()), name="docs-assets")
    parameters = {**(app.swagger_ui_parameters or {}), **SWAGGER_PARAMETERS}

    def root(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        base = root(request)
        return offline(
            get_swagger_ui_html(
                openapi_url=base + openapi_url,
                title=f"{app.title} - Swagger UI",
                swagger_js_url=f"{base}{ASSETS_URL}/{SWAGGER_JS}",
                swagger_css_url=f"{base}{ASSETS_URL}/{SWAGGER_CSS}",
                swagger_favicon_url=f"{base}{ASSETS_URL}/{FAVICON}",
                oauth2_redirect_url=base + OAUTH2_REDIRECT_URL,
                init_oauth=app.swagger_ui_init_oauth,
                swagger_ui_parameters=parameters,
            )
        )

    @app.get(OAUTH2_REDIRECT_URL, include_in_schema=False)
    async def swagger_ui_oauth2_redirect() -> HTMLResponse:
        return offline(get_swagger_ui_oauth2_redirect_html())

    @app.get(REDOC_URL, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        base = root(request)
        return offline(
            get_redoc_html(
                openapi_url=base + openapi_url,
                title=f"{app.title} - ReDoc",
                redoc_js_url=f"{base}{ASSETS_URL}/{REDOC_JS}",
                redoc_favicon_url=f"{base}{ASSETS_URL}/{FAVICON}",
                with_google_fonts=False,
            )
        )
