"""Beam search without copying the cross-attention cache every step (encoder-decoder models, e.g. Florence-2).

transformers' beam search reorders the whole ``EncoderDecoderCache`` after every step: the self-attention
keys and values (which do differ between beams) and the cross-attention keys and values of the image
tokens, which are the same for every beam of an image, since all of an image's beams attend to the same
encoder output. Reordering picks rows of the same image, so copying them changes nothing; on Florence-2-base
it is 12 copies of beams x 12 heads x 592 tokens x 64 per step (about 10% of a CPU beam-search step at
batch 1, more at larger batches). ``skip_cross_attention_reorder`` reorders the self-attention part only.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator
from typing import Any


def reorder_self_attention_only(model: Any, past: Any, beam_idx: Any) -> Any:
    """``generate``'s ``_reorder_cache`` hook: the self-attention cache follows the beams, the rest stays."""
    self_attention = getattr(past, "self_attention_cache", None)
    if self_attention is not None and hasattr(past, "cross_attention_cache"):
        self_attention.reorder_cache(beam_idx)
    else:
        past.reorder_cache(beam_idx)
    return past


def skip_cross_attention_reorder(model: Any) -> bool:
    """Install the hook on an encoder-decoder model that has no reorder of its own; True when installed."""
    config = getattr(model, "config", None)
    if not getattr(config, "is_encoder_decoder", False) or hasattr(model, "_reorder_cache"):
        return False
    model._reorder_cache = types.MethodType(reorder_self_attention_only, model)
    return True


@contextlib.contextmanager
def stock_beam_cache(model: Any) -> Iterator[bool]:
    """Beam search as transformers ships it while the block runs (the benchmark's baseline); True when
    descry's hook was set aside."""
    hook = model.__dict__.pop("_reorder_cache", None)
    try:
        yield hook is not None
    finally:
        if hook is not None:
            model._reorder_cache = hook
