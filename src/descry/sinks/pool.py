"""The one rule for a request's sinks, and the sinks built once per process, shared and closed at shutdown.

The rule (``choose_sinks``; docs/sinks.md): a request that names sinks gets exactly those (an
empty list: none). One that names none gets the default sinks, except when the caller receives
the result in its reply and names no asset (a plain ``/v1/caption``): then it gets none. Every
name is checked when the request is made, so an unknown sink is refused then (InputError: 400,
exit 2), never accepted and failed later.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from descry.config import Settings
from descry.errors import InputError
from descry.schemas import Enrichment, FieldChange, ImageRef, MetadataPolicy
from descry.sinks.base import Sink, close_sinks, deliver_all, sink_done, start_sinks
from descry.sinks.registry import build_sinks, configured_network_sinks, known_sinks, normalise

log = logging.getLogger("descry.sinks")


def choose_sinks(
    requested: Sequence[str] | None,
    defaults: Sequence[str],
    *,
    asset_id: str | None = None,
    in_reply: bool = False,
) -> list[str]:
    """Which sinks a request delivers to (not yet checked): see the module docstring."""
    if requested is not None:
        return normalise(requested)
    if in_reply and not asset_id:
        return []
    return normalise(defaults)


def configured_defaults(settings: Settings, face_default: Sequence[str]) -> list[str]:
    """``DESCRY_SINKS__DEFAULT`` when it is set, else the face's own default (the server: ``log``;
    ``descry caption``: its ``-f`` file; ``descry batch``: none besides its output file)."""
    if "default" in settings.sinks.model_fields_set:
        return list(settings.sinks.default)
    return list(face_default)


class SinkPool:
    """Named sinks, built lazily and shared (a webhook sink starts its outbox dispatcher once).

    ``start()`` (``Descry`` calls it when it opens) builds and starts the configured network sinks
    at once, so their outbox backlog is sent from process start without new work. Faces call
    ``names_for`` when a request arrives (it applies the rule and refuses unknown names), then
    ``deliver(names, enrichment, ref)`` per result, ``done(names, ref)`` to resume, and ``close()``
    at shutdown. ``instances`` are sinks the face configured itself (the CLI's
    ``-f/-o`` sidecar or JSONL) and take the place of the registry's sink of the same name.
    """

    def __init__(
        self,
        settings: Settings,
        instances: Mapping[str, Sink] | None = None,
        *,
        face_default: Sequence[str] | None = None,
    ) -> None:
        self.settings = settings
        self._instances = dict(instances or {})
        self._face_default = face_default
        self._sinks: dict[str, Sink] = {}
        self._lock = asyncio.Lock()

    @property
    def instances(self) -> dict[str, Sink]:
        """The sinks the face configured itself (they take the place of the registry's of the same name)."""
        return dict(self._instances)

    @property
    def default(self) -> list[str]:
        """The sinks a request that names none gets (when the rule gives it any)."""
        if self._face_default is None:
            return list(self.settings.sinks.default)
        return configured_defaults(self.settings, self._face_default)

    def names_for(
        self, requested: Sequence[str] | None, *, asset_id: str | None = None, in_reply: bool = True
    ) -> list[str]:
        """The rule, checked: ``in_reply`` is True for a caller that gets the result in its reply."""
        return self.check(choose_sinks(requested, self.default, asset_id=asset_id, in_reply=in_reply))

    def known(self) -> list[str]:
        return sorted({*known_sinks(), *self._instances})

    def check(self, names: Sequence[str]) -> list[str]:
        """Normalise requested names; an unknown one is the client's mistake (InputError, 400)."""
        wanted = normalise(names)
        known = self.known()
        unknown = [n for n in wanted if n not in known]
        if unknown:
            raise InputError(
                f"unknown sink {', '.join(map(repr, unknown))}", hint=f"choose from: {', '.join(known)}"
            )
        return wanted

    async def get(self, names: Sequence[str]) -> list[Sink]:
        """The sinks for checked names, built and started on first use."""
        wanted = self.check(names)
        async with self._lock:
            missing = [n for n in wanted if n not in self._sinks]
            if missing:
                built = build_sinks(missing, self.settings, self._instances)
                await start_sinks(built)
                for name, sink in zip(missing, built, strict=True):
                    self._sinks[name] = sink
        return [self._sinks[n] for n in wanted]

    async def start(self) -> None:
        """Build and start the network sinks the settings configure (the webhook when its URL is set)
        and the face's own instances that declare ``network``; one that cannot be built is logged and
        fails its deliveries as before, and never stops the process from starting."""
        names = configured_network_sinks(self.settings)
        names += [n for n, s in self._instances.items() if getattr(s, "network", False) and n not in names]
        for name in names:
            try:
                await self.get([name])
            except Exception:
                log.exception("the %s sink could not start; its outbox waits until it can", name)

    async def deliver(
        self, names: Sequence[str], enrichment: Enrichment, ref: ImageRef, *, policy: MetadataPolicy | None = None
    ) -> dict[str, str | None]:
        """Deliver to each named sink: sink name -> error message, or None when delivered. ``policy``: the
        request's metadata policy (None: each sink's configured one)."""
        if not names:
            return {}
        sinks = await self.get(names)
        return await deliver_all(sinks, enrichment, ref, policy)

    async def done(self, names: Sequence[str], ref: ImageRef) -> bool:
        """Resume: True when every named sink already holds this image's result (none named: False)."""
        return (await self.done_many(names, [ref]))[0]

    async def done_many(self, names: Sequence[str], refs: Sequence[ImageRef]) -> list[bool]:
        """``done`` for many images, asked in one worker thread."""
        if not names:
            return [False] * len(refs)
        sinks = await self.get(names)
        return await asyncio.to_thread(lambda: [all(sink_done(s, ref) for s in sinks) for ref in refs])

    async def prepare(self, names: Sequence[str], refs: Sequence[ImageRef]) -> dict[str, dict[Path, Path]]:
        """Let the named sinks decide their file names for a whole run (``prepare``); per sink, the images
        whose file is not the usual name because another image of the run shares it."""
        renamed: dict[str, dict[Path, Path]] = {}
        for name, sink in zip(self.check(names), await self.get(names), strict=True):
            prepare = getattr(sink, "prepare", None)
            if prepare is not None and (changed := await asyncio.to_thread(prepare, list(refs))):
                renamed[name] = changed
        return renamed

    async def kept_many(
        self, names: Sequence[str], refs: Sequence[ImageRef], policy: MetadataPolicy | None = None
    ) -> list[bool]:
        """Images the metadata policy leaves alone, so captioning them would write nothing: under ``skip``
        those any sink finds a caption for, otherwise those every sink keeps (a sink that cannot tell
        keeps nothing). The CLI skips them before the model runs."""
        if not names:
            return [False] * len(refs)
        sinks = await self.get(names)
        effective = policy or self.settings.sinks.policy

        def kept(ref: ImageRef) -> bool:
            votes = [_blocks(sink, ref, policy) for sink in sinks]
            return any(votes) if effective == "skip" else all(votes)

        return await asyncio.to_thread(lambda: [kept(ref) for ref in refs])

    async def plan(
        self, names: Sequence[str], enrichment: Enrichment, ref: ImageRef, *, policy: MetadataPolicy | None = None
    ) -> list[FieldChange]:
        """A dry run: what each named sink would change (a sink that cannot say: that it would get the
        result); nothing is written or sent."""
        changes: list[FieldChange] = []
        for name, sink in zip(self.check(names), await self.get(names), strict=True):
            plan = getattr(sink, "plan", None)
            if plan is None:
                what = FieldChange(sink=name, file="", field="result", after=enrichment.caption, action="write")
                changes.append(what)
            else:
                changes += await asyncio.to_thread(plan, enrichment, ref, policy)
        return changes

    async def close(self) -> None:
        sinks = list({id(s): s for s in self._sinks.values()}.values())
        self._sinks.clear()
        await close_sinks(sinks)


def _blocks(sink: Sink, ref: ImageRef, policy: MetadataPolicy | None) -> bool:
    blocks = getattr(sink, "blocks", None)
    if blocks is None:
        return False
    try:
        return bool(blocks(ref, policy))
    except Exception:
        log.exception("sink %s could not tell whether %s is kept", sink.name, ref.name)
        return False
