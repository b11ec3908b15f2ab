"""Fixtures for the hostile-input, overload and fault tests: in-process apps and real servers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from descry.api.app import create_app
from descry.backends.base import Backend
from descry.config import Settings
from descry.engine.pipeline import Engine
from tests.fakes.echo_backend import EchoBackend

SERVER = Path(__file__).with_name("echo_server.py")


def files_under(root: Path) -> set[Path]:
    """Every file below root (empty when root does not exist)."""
    return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()


@contextmanager
def app_client(
    settings: Settings, backend: Backend | None = None, *, ready_headers: dict[str, str] | None = None
) -> Iterator[TestClient]:
    """The real app around an EchoBackend, started (lifespan) and ready; server errors become 500s."""
    app = create_app(settings, engine=Engine(settings, backend=backend or EchoBackend()))
    with TestClient(app, raise_server_exceptions=False) as client:
        deadline = time.monotonic() + 20
        while client.get("/ready", headers=ready_headers).status_code != 200:
            assert time.monotonic() < deadline, "the app never became ready"
            time.sleep(0.05)
        yield client


@pytest.fixture
def open_settings(settings: Settings) -> Settings:
    """Settings without rate limits (the corpus sends many requests quickly)."""
    return settings.model_copy(
        update={"security": settings.security.model_copy(update={"client_rate": 0.0, "key_rate": 0.0})}
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """A real uvicorn server in a subprocess (EchoBackend), on 127.0.0.1."""

    def __init__(self, data_dir: Path, env: dict[str, str], *, delay: float = 0.0) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = data_dir.parent / f"server-{self.port}.log"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("DESCRY_")}
        full_env.update({"DESCRY_DATA_DIR": str(data_dir), "DESCRY_LOG_LEVEL": "warning", **env})
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, str(SERVER), str(self.port), str(delay)],
                cwd=data_dir.parent,
                env=full_env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"server exited early:\n{self.output()}"
            try:
                if httpx.get(f"{self.base}/ready", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server not ready after {timeout}s:\n{self.output()}")

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def terminate(self, timeout: float = 30.0) -> None:
        """SIGTERM and wait for a clean exit (killed and failed after ``timeout``).

        uvicorn shuts down gracefully, then re-raises the signal, so a clean exit reads -SIGTERM.
        """
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"server ignored SIGTERM for {timeout}s:\n{self.output()}") from None
        log = self.output()
        assert code in (0, -signal.SIGTERM), f"exit code {code}:\n{log}"
        assert "Traceback" not in log and "level=error" not in log, log

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def start(env: dict[str, Any] | None = None, *, delay: float = 0.0, data_dir: Path | None = None) -> ServerProcess:
        server = ServerProcess(data_dir or tmp_path / "data", {k: str(v) for k, v in (env or {}).items()}, delay=delay)
        started.append(server)
        server.wait_ready()
        return server

    yield start
    for server in started:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()
