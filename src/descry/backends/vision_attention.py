"""Fused attention for vision towers that transformers runs window by window or with eager matmuls.

- Qwen2-VL / Qwen2.5-VL: with ``sdpa``, transformers calls attention once per window of every image
  (a batch of 256 images at 448x448 is about 115,000 small calls in Qwen2.5-VL-7B); only flash-attn
  gets one varlen call. Here windows of the same length are stacked into one batched
  ``scaled_dot_product_attention`` call: a handful of calls per layer.
- BLIP: the ViT's attention is eager (the 577x577 score matrix of every head is materialised);
  ``scaled_dot_product_attention`` computes the same thing in one fused kernel.

The arithmetic is the same; only the number of calls and the memory traffic change. The faster
``forward`` is set on each module instance, so the model's classes and every other model stay untouched.
"""

from __future__ import annotations

import sys
import types
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


def windowed_forward(
    self: Any, hidden_states: Any, cu_seqlens: Any, position_embeddings: Any = None, **kwargs: Any
) -> Any:
    """Qwen2(.5)-VL vision attention with the per-window loop replaced by ``windowed_attention``.

    Calls that do not look like the transformers 5 signature go to the class's own forward.
    """
    rotary = getattr(sys.modules[type(self).__module__], "apply_rotary_pos_emb_vision", None)
    if position_embeddings is None or rotary is None:
        return type(self).forward(self, hidden_states, cu_seqlens, position_embeddings=position_embeddings, **kwargs)
    tokens = hidden_states.shape[0]
    qkv = self.qkv(hidden_states).reshape(tokens, 3, self.num_heads, -1).permute(1, 0, 2, 3)
    query, key, value = qkv.unbind(0)
    cos, sin = position_embeddings
    query, key = rotary(query, key, cos, sin)
    out = windowed_attention(query, key, value, cu_seqlens, self.scaling)
    return self.proj(out.reshape(tokens, -1))


def blip_forward(self: Any, hidden_states: Any, **kwargs: Any) -> tuple[Any, None]:
    """BLIP's ViT attention through ``scaled_dot_product_attention`` (no attention weights returned)."""
    import torch.nn.functional as F

    batch, tokens, width = hidden_states.shape
    qkv = self.qkv(hidden_states).reshape(batch, tokens, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
    attended = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], scale=self.scale)
    return self.projection(attended.transpose(1, 2).reshape(batch, tokens, width)), None


# (module, class) of a transformers attention block -> the fused forward that replaces it
FUSED: dict[tuple[str, str], Callable[..., Any]] = {
    ("transformers.models.qwen2_5_vl.modeling_qwen2_5_vl", "Qwen2_5_VLVisionAttention"): windowed_forward,
    ("transformers.models.qwen2_vl.modeling_qwen2_vl", "VisionAttention"): windowed_forward,
    ("transformers.models.blip.modeling_blip", "BlipAttention"): blip_forward,
}


def _kind(module: Any) -> tuple[str, str]:
    return type(module).__module__, type(module).__name__


def fuse_vision_attention(model: Any) -> int:
    """Give each vision attention block of ``model`` that has a fused forward that forward; returns how many.

    Blocks already on flash-attn keep it (one varlen kernel is as good).
    """
    count = 0
    for module in model.modules():
        forward = FUSED.get(_kind(module))
        implementation = getattr(getattr(module, "config", None), "_attn_implementation", None) or ""
        if forward is not None and "flash" not in implementation:
            module.forward = types.MethodType(forward, module)
            count += 1
    return count


@contextmanager
def stock_attention(model: Any) -> Iterator[int]:
    """The model as transformers ships it for the duration (for comparisons); yields how many blocks were fused."""
    fused = [(m, vars(m)["forward"]) for m in model.modules() if _kind(m) in FUSED and "forward" in vars(m)]
    for module, _forward in fused:
        del module.forward
    try:
        yield len(fused)
    finally:
        for module, forward in fused:
            module.forward = forward


def windowed_attention(query: Any, key: Any, value: Any, cu_seqlens: Any, scale: float) -> Any:
    """Attention within each window; tensors are (tokens, heads, head_dim), windows given by cumulative lengths."""
    import torch
    import torch.nn.functional as F

    tokens, heads, dim = query.shape
    bounds = cu_seqlens.tolist()
    starts_by_length: dict[int, list[int]] = defaultdict(list)
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        if end > start:
            starts_by_length[end - start].append(start)

    if len(starts_by_length) == 1:
        ((length, starts),) = starts_by_length.items()
        if len(starts) * length == tokens:  # equal windows tile the sequence: a view, no copies
            windows = len(starts)
            q, k, v = (t.view(windows, length, heads, dim).transpose(1, 2) for t in (query, key, value))
            attended = F.scaled_dot_product_attention(q, k, v, scale=scale)
            return attended.transpose(1, 2).reshape(tokens, heads, dim)

    out = torch.zeros_like(query)
    for length, starts in starts_by_length.items():
        offsets = torch.arange(length, device=query.device)
        index = (torch.tensor(starts, device=query.device)[:, None] + offsets).reshape(-1)
        windows = len(starts)
        q, k, v = (
            t.index_select(0, index).view(windows, length, heads, dim).transpose(1, 2) for t in (query, key, value)
        )
        attended = F.scaled_dot_product_attention(q, k, v, scale=scale)
        out.index_copy_(0, index, attended.transpose(1, 2).reshape(-1, heads, dim))
    return out
