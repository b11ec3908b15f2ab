"""Where results go (the only way out): log (the seeds' mock MAM), webhook (+ durable outbox), sidecar,
xmp, jsonl, and plugins; the contract is in ``descry.sinks.base``, the one rule in ``descry.sinks.pool``."""

from descry.sinks.base import Sink, asset_key, close_sinks, deliver_all, sink_done, start_sinks
from descry.sinks.registry import build_sinks, known_sinks

__all__ = [
    "Sink",
    "asset_key",
    "build_sinks",
    "close_sinks",
    "deliver_all",
    "known_sinks",
    "sink_done",
    "start_sinks",
]
