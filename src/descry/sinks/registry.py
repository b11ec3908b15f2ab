"""Sinks by name: every sink, built-in or plugin, is a ``descry.sinks`` entry point naming a factory.

A factory is ``factory(settings) -> Sink``. The entry points are read once per process
(``sink_factories``, cached); a plugin package adds a sink by declaring one in its own metadata::

    [project.entry-points."descry.sinks"]
    dam = "my_package.sinks:build_dam_sink"
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import entry_points

from descry.config import Settings
from descry.errors import ConfigError
from descry.sinks.base import Sink

log = logging.getLogger("descry.sinks")
ENTRY_POINT_GROUP = "descry.sinks"
SinkFactory = Callable[[Settings], Sink]


def log_sink(settings: Settings) -> Sink:
    from descry.sinks.log import LogSink

    return LogSink()


def webhook_sink(settings: Settings) -> Sink:
    from descry.sinks.webhook import WebhookSink

    return WebhookSink(settings.sinks.webhook, settings.data_dir / "outbox.db")


def sidecar_sink(settings: Settings) -> Sink:
    from descry.sinks.sidecar import SidecarSink

    sidecar = settings.sinks.sidecar
    return SidecarSink(
        sidecar.format, sidecar.output_dir, roots=settings.sources.allowed_roots, policy=settings.sinks.policy
    )


def xmp_sink(settings: Settings) -> Sink:
    from descry.sinks.xmp import XmpSink

    xmp = settings.sinks.xmp
    roots = settings.sources.allowed_roots
    return XmpSink(xmp.mode, xmp.output_dir, xmp.sidecar_name, roots=roots, policy=settings.sinks.policy)


def jsonl_sink(settings: Settings) -> Sink:
    from descry.sinks.jsonl import JsonlSink

    return JsonlSink(settings.sinks.jsonl_path or settings.data_dir / "enrichments.jsonl")


def webhook_configured(settings: Settings) -> bool:
    return bool(settings.sinks.webhook.url)


# network sinks (they send from a durable outbox) and whether the settings configure each: these are
# built and started at process start (``SinkPool.start``) so their backlog goes out without new work
NETWORK_SINKS: dict[str, Callable[[Settings], bool]] = {"webhook": webhook_configured}

# what pyproject.toml registers; used as well when descry runs from a source tree that is not installed
BUILTIN: dict[str, SinkFactory] = {
    "log": log_sink,
    "webhook": webhook_sink,
    "sidecar": sidecar_sink,
    "xmp": xmp_sink,
    "jsonl": jsonl_sink,
}


@functools.cache
def sink_factories() -> dict[str, SinkFactory]:
    """Every sink factory of this process: the ``descry.sinks`` entry points, loaded once."""
    factories = dict(BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            factories[ep.name.lower()] = ep.load()
        except Exception:  # a broken plugin must not take the built-in sinks down with it
            log.exception("the sink plugin %r (%s) could not be loaded", ep.name, ep.value)
    return factories


def known_sinks() -> list[str]:
    """Every sink name that can be built here."""
    return sorted(sink_factories())


def configured_network_sinks(settings: Settings) -> list[str]:
    """The network sinks these settings configure (the webhook, when its URL is set)."""
    return [name for name, configured in NETWORK_SINKS.items() if configured(settings)]


def normalise(names: Sequence[str]) -> list[str]:
    """Lower-case, stripped, blanks dropped, each name once, in order."""
    return list(dict.fromkeys(n.strip().lower() for n in names if n.strip()))


def build_sinks(names: Sequence[str], settings: Settings, instances: Mapping[str, Sink] | None = None) -> list[Sink]:
    """One sink per distinct name, in order (``instances`` are used as they are); an unknown name is a
    ConfigError listing the known ones."""
    factories = sink_factories()
    ready = dict(instances or {})
    wanted = normalise(names)
    unknown = [name for name in wanted if name not in factories and name not in ready]
    if unknown:
        raise ConfigError(
            f"unknown sink{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}",
            hint=f"choose from: {', '.join(sorted({*factories, *ready}))}",
        )
    return [ready[name] if name in ready else factories[name](settings) for name in wanted]
