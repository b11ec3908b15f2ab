"""Dry runs: each sink says what it would change (``plan``) and nothing is written or sent.

``dry_run_sinks`` builds stand-ins for a request's sinks: a sink that can plan (``xmp``, ``sidecar``)
reports its field changes; any other (``jsonl``, ``log``, a webhook, a plugin) is not even built
and reports only that it would receive the result.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from descry.config import Settings
from descry.schemas import Enrichment, FieldChange, ImageRef, MetadataPolicy
from descry.sinks.base import Sink, sink_done
from descry.sinks.registry import build_sinks, normalise

PlanHook = Callable[[ImageRef, list[FieldChange]], None]
PLANNING_SINKS = ("xmp", "sidecar")


class DryRunSink:
    """Stands in for ``inner`` (None: a sink that cannot plan) and hands each plan to ``on_plan``."""

    policies = True

    def __init__(self, name: str, inner: Sink | None, on_plan: PlanHook) -> None:
        self.name = name
        self.inner = inner
        self.on_plan = on_plan

    async def deliver(self, enrichment: Enrichment, ref: ImageRef, *, policy: MetadataPolicy | None = None) -> None:
        plan = getattr(self.inner, "plan", None)
        if plan is None:
            what = FieldChange(sink=self.name, file="", field="result", after=enrichment.caption, action="write")
            self.on_plan(ref, [what])
            return
        self.on_plan(ref, await asyncio.to_thread(plan, enrichment, ref, policy))

    def done(self, ref: ImageRef) -> bool:
        return self.inner is not None and sink_done(self.inner, ref)

    def blocks(self, ref: ImageRef, policy: MetadataPolicy | None = None) -> bool:
        blocks = getattr(self.inner, "blocks", None)
        return bool(blocks(ref, policy)) if blocks is not None else False

    def prepare(self, refs: Iterable[ImageRef]) -> dict[Path, Path]:
        prepare = getattr(self.inner, "prepare", None)
        return prepare(refs) if prepare is not None else {}

    async def close(self) -> None:
        if self.inner is not None:
            await self.inner.close()


def dry_run_sinks(
    names: Sequence[str], settings: Settings, instances: Mapping[str, Sink], on_plan: PlanHook
) -> dict[str, Sink]:
    """Stand-ins for ``names``: the face's own ``instances`` and the planning sinks wrapped, the rest not built."""
    out: dict[str, Sink] = {}
    for name in normalise(names):
        inner: Sink | None = None
        if name in instances:
            inner = instances[name]
        elif name in PLANNING_SINKS:
            (inner,) = build_sinks([name], settings)
        out[name] = DryRunSink(name, inner, on_plan)
    return out
