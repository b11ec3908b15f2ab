"""A Ray worker setup hook (``runtime_env={"worker_process_setup_hook": ...}``): every Descry that a
Ray worker builds runs the scripted EchoBackend, as the in-process faces of a test do."""

from __future__ import annotations


def use_echo_backend() -> None:
    import descry.core
    from descry.engine.pipeline import Engine
    from tests.fakes.echo_backend import EchoBackend

    descry.core.Engine = lambda settings: Engine(settings, backend=EchoBackend())  # type: ignore[assignment,misc]
