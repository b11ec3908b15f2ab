"""Run Phi-3.5-vision's remote code (written for transformers 4.x) on transformers 5.

The remote code expects APIs that transformers 5 removed or changed. Nothing here patches
transformers globally; each piece is scoped to the remote module, the loaded model or one call:

* ``transformers.modeling_attn_mask_utils`` (imported at module level by the remote code) is
  provided only while the remote code is imported (``legacy_transformers_api``).
* The remote module's ``DynamicCache`` is swapped for a subclass with the 4.x cache API
  (``seen_tokens``, ``get_max_length`` meaning "no maximum" as ``None``, ``get_usable_length``,
  ``from_legacy_cache``, ``to_legacy_cache``); generation gets a fresh one per call.
* ``generate`` passes the cache as ``cache`` and full-length ``position_ids``; the remote
  ``prepare_inputs_for_generation`` reads ``past_key_values`` and only slices position ids it
  derived itself. The loaded model's method is wrapped to pass what 4.x passed.
* The model class is loaded directly, with ``GenerationMixin`` added (``remote_model_class``):
  through ``AutoModelForCausalLM`` a second load in one process gets a class that cannot generate.
  Its 4.x flag ``_supports_flash_attn_2`` becomes 5.x's ``_supports_flash_attn`` when asked for.
* The remote processor takes one prompt per call and no ``padding_side``; ``LegacyProcessor``
  calls it per item and pads the batch itself, on the side asked for.
"""

from __future__ import annotations

import inspect
import sys
import types
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from descry.backends.hf_common import require
from descry.errors import ConfigError

MASK_UTILS = "transformers.modeling_attn_mask_utils"
ADAPTED = "_descry_phi3v_adapted"


def prepare_4d_causal_attention_mask(
    attention_mask: Any,
    input_shape: Sequence[int],
    inputs_embeds: Any,
    past_key_values_length: int,
    sliding_window: int | None = None,
) -> Any:
    """The 4.x helper: an additive (batch, 1, query, key) mask, causal, windowed and padding-aware."""
    torch = require("torch")
    if attention_mask is not None and attention_mask.dim() == 4:
        return attention_mask
    batch, query = int(input_shape[0]), int(input_shape[-1])
    total = past_key_values_length + query
    device, dtype = inputs_embeds.device, inputs_embeds.dtype
    keys = torch.arange(total, device=device)[None, :]
    queries = torch.arange(past_key_values_length, total, device=device)[:, None]
    allowed = keys <= queries
    if sliding_window:
        allowed = allowed & (keys > queries - sliding_window)
    allowed = allowed[None, None].expand(batch, 1, query, total)
    if attention_mask is not None:
        allowed = allowed & attention_mask[:, None, None, -total:].to(device=device, dtype=torch.bool)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=device)
    return mask.masked_fill(~allowed, torch.finfo(dtype).min)


@contextmanager
def legacy_transformers_api() -> Iterator[None]:
    """Provide the 4.x modules the remote code imports, only while it is being imported."""
    added = False
    try:
        require(MASK_UTILS)
    except Exception:  # noqa: BLE001 - the module is gone in transformers 5
        stand_in = types.ModuleType(MASK_UTILS)
        stand_in._prepare_4d_causal_attention_mask = prepare_4d_causal_attention_mask  # type: ignore[attr-defined]
        sys.modules[MASK_UTILS] = stand_in
        added = True
    try:
        yield
    finally:
        if added:
            sys.modules.pop(MASK_UTILS, None)


@lru_cache(maxsize=1)
def legacy_cache_class() -> type:
    """A ``DynamicCache`` with the 4.x methods the remote code calls."""
    dynamic_cache = require("transformers.cache_utils").DynamicCache

    class LegacyDynamicCache(dynamic_cache):  # type: ignore[misc, valid-type]
        """DynamicCache as transformers 4.x exposed it."""

        @property
        def seen_tokens(self) -> int:
            return int(self.get_seq_length())

        def get_max_length(self, layer_idx: int | None = None) -> int | None:
            return None

        def get_usable_length(self, new_seq_length: int, layer_idx: int = 0) -> int:
            return int(self.get_seq_length(layer_idx))

        @classmethod
        def from_legacy_cache(cls, past_key_values: Any = None) -> LegacyDynamicCache:
            cache = cls()
            for index, (keys, values) in enumerate(past_key_values or ()):
                cache.update(keys, values, index)
            return cache

        def to_legacy_cache(self) -> tuple[tuple[Any, Any], ...]:
            return tuple((layer.keys, layer.values) for layer in self.layers)

    return LegacyDynamicCache


def new_cache() -> Any:
    """An empty cache for one ``generate`` call."""
    return legacy_cache_class()()


@lru_cache(maxsize=1)
def generate_cache_kwarg() -> str:
    """The ``generate`` keyword for a cache: ``cache`` on recent transformers, ``past_key_values`` before."""
    mixin = require("transformers.generation.utils").GenerationMixin
    params = inspect.signature(mixin.prepare_inputs_for_generation).parameters
    return "cache" if "cache" in params else "past_key_values"


def adapt_model(model: Any) -> Any:
    """Fit a loaded remote model to transformers 5; calling it twice is harmless."""
    if getattr(model, ADAPTED, False):
        return model
    legacy = legacy_cache_class()
    for cls in type(model).__mro__:
        module = sys.modules.get(cls.__module__)
        if module is None or not cls.__module__.startswith("transformers_modules"):
            continue
        if isinstance(getattr(module, "DynamicCache", None), type):
            vars(module)["DynamicCache"] = legacy
    original = model.prepare_inputs_for_generation
    params = inspect.signature(original).parameters
    if "past_key_values" in params and "cache" not in params:

        def prepare_inputs_for_generation(input_ids: Any, cache: Any = None, **kwargs: Any) -> Any:
            if cache is not None and kwargs.get("past_key_values") is None:
                kwargs["past_key_values"] = cache
            # 4.x generate left position ids to the model; the remote code derives them from the mask
            kwargs.pop("position_ids", None)
            return original(input_ids, **kwargs)

        model.prepare_inputs_for_generation = prepare_inputs_for_generation
    setattr(model, ADAPTED, True)
    return model


def remote_model_class(config: Any, model_id: str, revision: str | None, flash_attention: bool = False) -> Any:
    """The model class config.json's ``auto_map`` names, able to ``generate``.

    Loading it directly (not through ``AutoModelForCausalLM``) sidesteps transformers registering
    the class without ``GenerationMixin`` on the first load, which breaks every later load in the
    process. With ``flash_attention`` the 4.x flag ``_supports_flash_attn_2`` is carried over to
    transformers 5's ``_supports_flash_attn``.
    """
    ref = (getattr(config, "auto_map", None) or {}).get("AutoModelForCausalLM")
    if not ref:
        raise ConfigError(
            f"{model_id} does not name its remote model class (auto_map.AutoModelForCausalLM in config.json)",
            hint="use a Phi-3.5-vision checkpoint that ships its modeling code, or pick another backend",
        )
    dynamic = require("transformers.dynamic_module_utils")
    model_class = dynamic.get_class_from_dynamic_module(ref, model_id, revision=revision)
    if flash_attention:
        for cls in model_class.__mro__:
            if cls.__module__.startswith("transformers_modules") and vars(cls).get("_supports_flash_attn_2"):
                cls._supports_flash_attn = True
    auto_factory = require("transformers.models.auto.auto_factory")
    return auto_factory.add_generation_mixin_to_remote_model(model_class)


class LegacyProcessor:
    """Batch front for the remote processor: one call per item, then padding on the chosen side."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor
        self.tokenizer = processor.tokenizer

    @property
    def pad_token_id(self) -> int:
        tok = self.tokenizer
        for candidate in (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id):
            if candidate is not None:
                return int(candidate)
        return 0

    def __call__(self, texts: Sequence[str], images: Sequence[Any], padding_side: str = "left") -> dict[str, Any]:
        if len(texts) != len(images):
            raise ValueError(f"{len(texts)} prompts for {len(images)} images")
        items = [self.processor(text, [image], return_tensors="pt") for text, image in zip(texts, images, strict=True)]
        return self.collate(items, padding_side)

    def collate(self, items: Sequence[Any], padding_side: str) -> dict[str, Any]:
        """Stack per-item outputs into one batch, padding ``input_ids``/``attention_mask``."""
        torch = require("torch")
        if padding_side not in {"left", "right"}:
            raise ValueError(f"padding_side must be 'left' or 'right', not {padding_side!r}")
        width = max(int(item["input_ids"].shape[-1]) for item in items)
        ids, masks = [], []
        for item in items:
            row, mask = item["input_ids"][0], item["attention_mask"][0]
            pad = width - int(row.shape[0])
            fill_ids = torch.full((pad,), self.pad_token_id, dtype=row.dtype)
            fill_mask = torch.zeros(pad, dtype=mask.dtype)
            if padding_side == "left":
                ids.append(torch.cat([fill_ids, row]))
                masks.append(torch.cat([fill_mask, mask]))
            else:
                ids.append(torch.cat([row, fill_ids]))
                masks.append(torch.cat([mask, fill_mask]))
        return {
            "input_ids": torch.stack(ids),
            "attention_mask": torch.stack(masks),
            "pixel_values": torch.cat([item["pixel_values"] for item in items]),
            "image_sizes": torch.cat([torch.as_tensor(item["image_sizes"]) for item in items]),
        }
