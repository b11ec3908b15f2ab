"""The Hugging Face hub as descry meets it: is a model cached, can the hub be reached, and how its libraries talk.

transformers asks the hub for every file it loads and, when the hub cannot be reached, retries for
about 25 seconds before it says so. ``reachable`` asks once, with a short timeout and no retries, so
a model that is neither on disk nor reachable fails at once; ``quiet_output`` is for the faces (the
CLI, the server factory), which decide at start-up what huggingface_hub and transformers may print.
"""

from __future__ import annotations

import importlib
import logging
import time
from typing import Any

from descry.errors import require

PROBE_TIMEOUT_S = 3.0
PROBE_TTL_S = 60.0

_probes: dict[str, tuple[float, bool]] = {}


def _hub(module: str = "") -> Any:
    return require(f"huggingface_hub{'.' if module else ''}{module}")


def endpoint() -> str:
    """The hub's address (``HF_ENDPOINT``, else huggingface.co)."""
    return str(_hub("constants").ENDPOINT)


def offline() -> bool:
    """``HF_HUB_OFFLINE=1`` (or ``TRANSFORMERS_OFFLINE=1``): nothing may be downloaded."""
    return bool(_hub("constants").is_offline_mode())


def cached(model_id: str, revision: str | None = None) -> bool:
    """Whether the local cache holds the model's config.json (so it was downloaded before)."""
    try:
        found = _hub().try_to_load_from_cache(model_id, "config.json", revision=revision)
    except ValueError:  # not a valid repo id
        return False
    return isinstance(found, str)


def reachable() -> bool:
    """One HEAD request to the hub, no retries; the answer is kept for a minute."""
    url = endpoint()
    now = time.monotonic()
    seen = _probes.get(url)
    if seen is not None and now - seen[0] < PROBE_TTL_S:
        return seen[1]
    try:
        _hub("utils").get_session().head(url, timeout=PROBE_TIMEOUT_S)
        answer = True
    except Exception:  # noqa: BLE001 - any failure to get an answer (DNS, refused, timeout, TLS) is "unreachable"
        answer = False
    _probes[url] = (now, answer)
    return answer


def quiet_output(*, terminal: bool, propagate: bool = False) -> None:
    """What huggingface_hub and transformers print; a face calls this once at start-up.

    Off a terminal (a pipe, a log file, a container) only their errors get through: no download
    retries, no "Loading weights" progress bars. ``propagate``: the face has its own root handler
    (the server's key=value log), so their own handlers are dropped and each record prints once.
    """
    hub_logging = _optional("huggingface_hub.utils.logging")
    if hub_logging is not None:
        if not terminal:
            hub_logging.set_verbosity_error()
            importlib.import_module("huggingface_hub.utils").disable_progress_bars()
        if propagate:
            logging.getLogger("huggingface_hub").handlers.clear()
            hub_logging.enable_propagation()
    tf_logging = _optional("transformers.utils.logging")
    if tf_logging is not None:
        if not terminal:
            tf_logging.set_verbosity_error()
            tf_logging.disable_progress_bar()
        if propagate:
            tf_logging.disable_default_handler()
            tf_logging.enable_propagation()


def _optional(module: str) -> Any:
    """The module, or None when its library is not installed (then there is nothing to quiet)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        return None
