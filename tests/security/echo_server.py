"""Run descry's real app under uvicorn with the scripted EchoBackend (for server-level tests).

    python tests/security/echo_server.py PORT [DELAY_SECONDS]

Settings come from the DESCRY_* environment, as with ``descry serve``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from descry.api.app import create_app  # noqa: E402
from descry.api.connections import uvicorn_options  # noqa: E402
from descry.config import Settings  # noqa: E402
from descry.engine.pipeline import Engine  # noqa: E402
from tests.fakes.echo_backend import EchoBackend  # noqa: E402


def main() -> None:
    port = int(sys.argv[1])
    delay = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
    settings = Settings()
    app = create_app(settings, engine=Engine(settings, backend=EchoBackend(delay=delay)))
    options = uvicorn_options(settings.server)  # the header deadline and connection cap `descry serve` uses
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=20, **options)


if __name__ == "__main__":
    main()
