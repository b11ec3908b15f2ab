"""The Sink contract and delivery to several sinks at once.

A sink has a ``name``, ``async deliver(enrichment, ref)`` (raise a DescryError when it cannot),
``done(ref) -> bool`` (is this image's result already there? blocking, cheap, never raises; resume
asks it), ``async close()``, and optionally ``async start()`` for background work. A sink that
writes into metadata a person may own sets ``policies = True`` and takes ``deliver(..., policy=)``
(a request's metadata policy), and may offer ``prepare(refs)`` (names for a whole run),
``blocks(ref, policy)`` (the policy leaves this image's output alone) and ``plan(enrichment, ref,
policy)`` (a dry run's field changes). Built-in and
plugin sinks are registered the same way: a ``descry.sinks`` entry point naming a
``factory(settings) -> Sink`` (see ``descry.sinks.registry``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from descry.errors import DescryError
from descry.schemas import Enrichment, ImageRef, MetadataPolicy

log = logging.getLogger("descry.sinks")


@runtime_checkable
class Sink(Protocol):
    """Somewhere an enrichment is delivered: a MAM, the image's metadata, a file."""

    name: str

    async def deliver(self, enrichment: Enrichment, ref: ImageRef) -> None:
        """Deliver one enrichment; raise a DescryError when it cannot be done."""
        ...

    def done(self, ref: ImageRef) -> bool:
        """Whether this image's result is already delivered here (resume skips it); False when unknown."""
        ...

    async def close(self) -> None:
        """Release files, connections and background tasks."""
        ...


def sink_done(sink: Sink, ref: ImageRef) -> bool:
    """Ask a sink whether ``ref`` is done; a sink without ``done`` (an older plugin) never is."""
    done = getattr(sink, "done", None)
    if done is None:
        return False
    try:
        return bool(done(ref))
    except Exception:
        log.exception("sink %s could not tell whether %s is done", sink.name, ref.name)
        return False


def asset_key(enrichment: Enrichment, ref: ImageRef) -> str:
    """The id the destination knows the image by: the asset id, else the image's name."""
    return enrichment.asset_id or ref.name


async def deliver_to(sink: Sink, enrichment: Enrichment, ref: ImageRef, policy: MetadataPolicy | None = None) -> None:
    """``sink.deliver``, with the request's metadata policy for a sink that takes one."""
    if policy is not None and getattr(sink, "policies", False):
        await sink.deliver(enrichment, ref, policy=policy)  # type: ignore[call-arg]
    else:
        await sink.deliver(enrichment, ref)


async def _deliver_one(sink: Sink, enrichment: Enrichment, ref: ImageRef, policy: MetadataPolicy | None) -> str | None:
    try:
        await deliver_to(sink, enrichment, ref, policy)
    except DescryError as exc:
        log.warning("sink %s failed for %s: %s", sink.name, ref.name, exc)
        return str(exc)
    except Exception as exc:  # one broken sink must never stop the others
        log.exception("sink %s crashed for %s", sink.name, ref.name)
        return f"{type(exc).__name__}: {exc}"
    return None


async def deliver_all(
    sinks: Sequence[Sink], enrichment: Enrichment, ref: ImageRef, policy: MetadataPolicy | None = None
) -> dict[str, str | None]:
    """Deliver to every sink concurrently and independently: sink name -> error message or None."""
    results = await asyncio.gather(*(_deliver_one(sink, enrichment, ref, policy) for sink in sinks))
    return {sink.name: result for sink, result in zip(sinks, results, strict=True)}


async def start_sinks(sinks: Sequence[Sink]) -> None:
    """Start the background work of the sinks that have some (the webhook dispatcher)."""
    for sink in sinks:
        start = getattr(sink, "start", None)
        if start is not None:
            await start()


async def close_sinks(sinks: Sequence[Sink]) -> None:
    """Close every sink, even when one of them fails to close."""
    for sink in sinks:
        try:
            await sink.close()
        except Exception:
            log.exception("closing sink %s failed", sink.name)
