"""Where results go: log (the seeds' mock MAM), webhook (+ durable outbox), sidecar, xmp, jsonl."""

from descry.sinks.base import Sink, asset_key, close_sinks, deliver_all, start_sinks
from descry.sinks.registry import build_sinks, known_sinks

__all__ = ["Sink", "asset_key", "build_sinks", "close_sinks", "deliver_all", "known_sinks", "start_sinks"]
