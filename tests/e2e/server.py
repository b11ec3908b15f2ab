"""Start a real ``descry serve`` process on a free local port and wait until it is ready."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

# environment names that would leak the developer's configuration into the server under test
LEAKY_PREFIXES = ("DESCRY_",)
LEAKY_NAMES = {"MAX_TOKENS", "TEST_MODE", "VLM_MODEL_ID", "VLM_LOAD_8BIT", "USE_GPT_OSS", "GPT_OSS_MODEL_ID"}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """``python -m descry.cli serve`` with the given environment, run from ``cwd`` (no stray .env)."""

    def __init__(self, cwd: Path, env: dict[str, str], *, extra_args: list[str] | None = None) -> None:
        self.cwd = Path(cwd)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.cwd / "server.log"
        base = {
            k: v for k, v in os.environ.items() if not k.startswith(LEAKY_PREFIXES) and k not in LEAKY_NAMES
        }
        self.env = {**base, **env}
        self.args = extra_args or []
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0, *, until: str = "/ready") -> ServerProcess:
        """Start and wait until ``until`` answers 200 (``/health`` for a server whose model fails)."""
        cmd = [sys.executable, "-m", "descry.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        self.cwd.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [*cmd, *self.args], cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        self.wait_ready(timeout, until)
        return self

    def wait_ready(self, timeout: float, until: str = "/ready") -> None:
        """Poll ``until``; fail with the server's log when it exits or never answers 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"the server exited before it was ready:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}{until}", timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the server was not ready within {timeout}s:\n{self.log_tail()}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM (a graceful shutdown), then SIGKILL if it hangs; returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
