"""Build sinks by name from Settings; plugins add more through the ``descry.sinks`` entry points."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points

from descry.config import Settings
from descry.errors import ConfigError
from descry.sinks.base import Sink


def _log(settings: Settings) -> Sink:
    from descry.sinks.log import LogSink

    return LogSink()


def _webhook(settings: Settings) -> Sink:
    from descry.sinks.webhook import WebhookSink

    return WebhookSink(settings.sinks.webhook, settings.data_dir / "outbox.db")


def _sidecar(settings: Settings) -> Sink:
    from descry.sinks.sidecar import SidecarSink

    return SidecarSink(settings.sinks.sidecar.format, settings.sinks.sidecar.output_dir)


def _xmp(settings: Settings) -> Sink:
    from descry.sinks.xmp import XmpSink

    xmp = settings.sinks.xmp
    return XmpSink(xmp.mode, xmp.output_dir, xmp.sidecar_name)


def _jsonl(settings: Settings) -> Sink:
    from descry.sinks.jsonl import JsonlSink

    return JsonlSink(settings.sinks.jsonl_path or settings.data_dir / "enrichments.jsonl")


BUILTIN: dict[str, Callable[[Settings], Sink]] = {
    "log": _log,
    "webhook": _webhook,
    "sidecar": _sidecar,
    "xmp": _xmp,
    "jsonl": _jsonl,
}


def _plugins() -> dict[str, EntryPoint]:
    """Third-party sinks: an entry point in group ``descry.sinks`` naming a ``factory(settings) -> Sink``."""
    return {ep.name: ep for ep in entry_points(group="descry.sinks")}


def known_sinks() -> list[str]:
    """Every sink name that can be built here."""
    return sorted({*BUILTIN, *_plugins()})


def build_sinks(names: list[str], settings: Settings) -> list[Sink]:
    """One sink per distinct name, in order; an unknown name is a ConfigError listing the known ones."""
    plugins = _plugins()
    wanted = list(dict.fromkeys(n.strip().lower() for n in names))
    unknown = [name for name in wanted if name not in BUILTIN and name not in plugins]
    if unknown:
        raise ConfigError(
            f"unknown sink{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}",
            hint=f"choose from: {', '.join(known_sinks())}",
        )
    return [BUILTIN[name](settings) if name in BUILTIN else plugins[name].load()(settings) for name in wanted]
