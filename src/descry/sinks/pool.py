"""Sinks built once per process on first use, shared by requests and job workers, closed at shutdown."""

from __future__ import annotations

import asyncio
import logging

from descry.config import Settings
from descry.errors import InputError
from descry.schemas import Enrichment, ImageRef
from descry.sinks import Sink, build_sinks, close_sinks, deliver_all, known_sinks, start_sinks

log = logging.getLogger("descry.sinks")


class SinkPool:
    """Named sinks, built lazily (a webhook sink starts its outbox dispatcher once)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._sinks: dict[str, Sink] = {}
        self._lock = asyncio.Lock()

    @property
    def default(self) -> list[str]:
        return list(self.settings.sinks.default)

    def names_for(self, requested: list[str] | None, *, asset_id: str | None) -> list[str]:
        """Which sinks a request delivers to: the named ones, else the defaults when it names an asset."""
        if requested is not None:
            return requested
        return self.default if asset_id else []

    def check(self, names: list[str]) -> list[str]:
        """Normalise requested names; an unknown one is the client's mistake (400)."""
        wanted = list(dict.fromkeys(n.strip().lower() for n in names if n.strip()))
        known = known_sinks()
        unknown = [n for n in wanted if n not in known]
        if unknown:
            raise InputError(
                f"unknown sink {', '.join(map(repr, unknown))}", hint=f"choose from: {', '.join(known)}"
            )
        return wanted

    async def get(self, names: list[str]) -> list[Sink]:
        wanted = self.check(names)
        async with self._lock:
            missing = [n for n in wanted if n not in self._sinks]
            if missing:
                built = build_sinks(missing, self.settings)
                await start_sinks(built)
                for name, sink in zip(missing, built, strict=True):
                    self._sinks[name] = sink
        return [self._sinks[n] for n in wanted]

    async def deliver(self, names: list[str], enrichment: Enrichment, ref: ImageRef) -> dict[str, str | None]:
        """Deliver to each named sink: sink name -> error message, or None when delivered."""
        if not names:
            return {}
        sinks = await self.get(names)
        return await deliver_all(sinks, enrichment, ref)

    async def close(self) -> None:
        sinks = list({id(s): s for s in self._sinks.values()}.values())
        self._sinks.clear()
        await close_sinks(sinks)
