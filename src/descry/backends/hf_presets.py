"""Ready-made image-text-to-text models for the hf_vlm backend (``descry models`` lists them)."""

from __future__ import annotations

from typing import Any

from descry.backends.base import Preset, chat_spec

QWEN_MAX_PIXELS = 768 * 28 * 28


def _chat(model_id: str, note: str, **options: Any) -> Preset:
    return Preset(chat_spec(model_id, "hf_vlm", **options), note)


HF_VLM_PRESETS: dict[str, Preset] = {
    "qwen2.5-vl-3b": _chat("Qwen/Qwen2.5-VL-3B-Instruct", "3B instruct, GPU recommended", max_pixels=QWEN_MAX_PIXELS),
    "qwen2.5-vl-7b": _chat("Qwen/Qwen2.5-VL-7B-Instruct", "7B instruct, GPU", max_pixels=QWEN_MAX_PIXELS),
    "smolvlm": _chat("HuggingFaceTB/SmolVLM-Instruct", "2B instruct"),
    "smolvlm-256m": _chat("HuggingFaceTB/SmolVLM-256M-Instruct", "256M instruct, CPU friendly"),
    "llava-1.5-7b": _chat("llava-hf/llava-1.5-7b-hf", "7B instruct, GPU"),
}
