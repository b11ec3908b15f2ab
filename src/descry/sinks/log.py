"""The ``log`` sink: the seed projects' mock MAM client, as a log line per image."""

from __future__ import annotations

import json
import logging

from descry.schemas import Enrichment, ImageRef
from descry.sinks.base import asset_key


class LogSink:
    """Logs ``[MAM] Updated asset <id> with metadata: <json>`` on the ``descry.mam`` logger."""

    name = "log"

    def __init__(self, logger: logging.Logger | None = None, level: int = logging.INFO) -> None:
        self._log = logger or logging.getLogger("descry.mam")
        self._level = level

    async def deliver(self, enrichment: Enrichment, ref: ImageRef) -> None:
        metadata = {
            "caption": enrichment.caption,
            "tags": [tag.model_dump(mode="json") for tag in enrichment.tags],
            "source": enrichment.source,
            "reasoning_trace": enrichment.reasoning_trace,
            "enhanced": enrichment.enhanced,
            "original_caption": enrichment.original_caption,
            "name": enrichment.name,
        }
        self._log.log(
            self._level,
            "[MAM] Updated asset %s with metadata: %s",
            asset_key(enrichment, ref),
            json.dumps(metadata, ensure_ascii=False),
        )

    def done(self, ref: ImageRef) -> bool:
        """A log line is never something to resume from."""
        return False

    async def close(self) -> None:
        return None
