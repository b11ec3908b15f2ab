"""descry: self-hosted image captioning and metadata enrichment.

The library in one object::

    from descry import CaptionRequest, Descry, Settings

    async with Descry(Settings()) as d:
        result = await d.enrich("photo.jpg", CaptionRequest())

See docs/library.md. Names are imported on first use, so ``import descry`` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from descry._version import __version__

_EXPORTS = {
    "Descry": "descry.core",
    "Result": "descry.core",
    "Source": "descry.core",
    "Settings": "descry.config",
    "CaptionRequest": "descry.schemas",
    "Enrichment": "descry.schemas",
    "ImageRef": "descry.schemas",
    "ItemError": "descry.schemas",
    "DescryError": "descry.errors",
    "TrustPolicy": "descry.sources.policy",
}

__all__ = [
    "CaptionRequest",
    "Descry",
    "DescryError",
    "Enrichment",
    "ImageRef",
    "ItemError",
    "Result",
    "Settings",
    "Source",
    "TrustPolicy",
    "__version__",
]

if TYPE_CHECKING:
    from descry.config import Settings
    from descry.core import Descry, Result, Source
    from descry.errors import DescryError
    from descry.schemas import CaptionRequest, Enrichment, ImageRef, ItemError
    from descry.sources.policy import TrustPolicy


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'descry' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
