"""Ready-made image-text-to-text models for the hf_vlm backend (``descry models`` lists them).

Sizes are the published parameter counts and the safetensors weights a pull fetches (rounded; `descry
pull` reads the exact figure from the hub first). ``cpu``: see ``Preset``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from descry.backends.base import Preset, chat_spec

QWEN_MAX_PIXELS = 768 * 28 * 28
QWEN3_MAX_PIXELS = 768 * 32 * 32  # Qwen3-VL: 16-pixel patches merged 2x2, so 32x32 pixels a token

JOYCAPTION_BRIEF = "Write a one-sentence descriptive caption for this image in a formal tone."
JOYCAPTION_DETAILED = "Write a long descriptive caption for this image in a formal tone."

QWEN3 = "detailed captions, instructions, text in images, many languages"
QWEN25 = "detailed captions, instructions, documents and text in images"
SMOL = "captions and instructions on small machines"
INTERNVL = "captions, text, charts and documents for its size"
ONEVISION = "captions and questions about images"


def _chat(
    model_id: str,
    note: str,
    *,
    model_type: str,
    params_b: float,
    download_gb: float,
    good_at: str,
    cpu: str,
    licence: str,
    gated: bool = False,
    **options: Any,
) -> Preset:
    return Preset(
        chat_spec(model_id, "hf_vlm", **options),
        note,
        params_b=params_b,
        download_gb=download_gb,
        good_at=good_at,
        cpu=cpu,
        licence=licence,
        gated=gated,
        model_type=model_type,
    )


def _qwen3(size: str, params_b: float, download_gb: float, cpu: str) -> Preset:
    return _chat(
        f"Qwen/Qwen3-VL-{size}-Instruct",
        f"Qwen3-VL {size} instruct; images capped at 768 tokens",
        model_type="qwen3_vl",
        params_b=params_b,
        download_gb=download_gb,
        good_at=QWEN3,
        cpu=cpu,
        licence="apache-2.0",
        max_pixels=QWEN3_MAX_PIXELS,
    )


def _joycaption() -> Preset:
    preset = _chat(
        "fancyfeast/llama-joycaption-beta-one-hf-llava",
        "JoyCaption Beta One: LLaVA (SigLIP + Llama 3.1 8B) trained to caption datasets",
        model_type="llava",
        params_b=8.5,
        download_gb=17.0,
        good_at="training-set captions: descriptive, straight, booru-style or prompt-style, any subject",
        cpu="no",
        licence="llama3.1",
    )
    spec = replace(preset.spec, default_prompt=JOYCAPTION_BRIEF, detailed_prompt=JOYCAPTION_DETAILED)
    return replace(preset, spec=spec)


HF_VLM_PRESETS: dict[str, Preset] = {
    "qwen3-vl-2b": _qwen3("2B", 2.1, 4.3, "slow"),
    "qwen3-vl-4b": _qwen3("4B", 4.4, 8.9, "slow"),
    "qwen3-vl-8b": _qwen3("8B", 8.8, 17.5, "no"),
    "qwen2.5-vl-3b": _chat(
        "Qwen/Qwen2.5-VL-3B-Instruct",
        "3B instruct, GPU recommended; images capped at 768 tokens",
        model_type="qwen2_5_vl",
        params_b=3.8,
        download_gb=7.5,
        good_at=QWEN25,
        cpu="slow",
        licence="qwen-research",
        max_pixels=QWEN_MAX_PIXELS,
    ),
    "qwen2.5-vl-7b": _chat(
        "Qwen/Qwen2.5-VL-7B-Instruct",
        "7B instruct, GPU; images capped at 768 tokens",
        model_type="qwen2_5_vl",
        params_b=8.3,
        download_gb=16.6,
        good_at=QWEN25,
        cpu="no",
        licence="apache-2.0",
        max_pixels=QWEN_MAX_PIXELS,
    ),
    "gemma-3-4b": _chat(
        "google/gemma-3-4b-it",
        "Gemma 3 4B instruct; gated: accept the licence on the model page",
        model_type="gemma3",
        params_b=4.3,
        download_gb=8.6,
        good_at="fluent captions in over 140 languages, instructions",
        cpu="slow",
        licence="gemma",
        gated=True,
    ),
    "smolvlm2-256m": _chat(
        "HuggingFaceTB/SmolVLM2-256M-Video-Instruct",
        "256M instruct, CPU friendly",
        model_type="smolvlm",
        params_b=0.26,
        download_gb=0.5,
        good_at=SMOL,
        cpu="yes",
        licence="apache-2.0",
    ),
    "smolvlm2-500m": _chat(
        "HuggingFaceTB/SmolVLM2-500M-Video-Instruct",
        "500M instruct, CPU friendly",
        model_type="smolvlm",
        params_b=0.51,
        download_gb=1.0,
        good_at=SMOL,
        cpu="yes",
        licence="apache-2.0",
    ),
    "smolvlm2-2.2b": _chat(
        "HuggingFaceTB/SmolVLM2-2.2B-Instruct",
        "2.2B instruct",
        model_type="smolvlm",
        params_b=2.2,
        download_gb=4.5,
        good_at="detailed captions and instructions at 2B",
        cpu="slow",
        licence="apache-2.0",
    ),
    "smolvlm": _chat(
        "HuggingFaceTB/SmolVLM-Instruct",
        "2B instruct",
        model_type="idefics3",
        params_b=2.2,
        download_gb=4.5,
        good_at=SMOL,
        cpu="slow",
        licence="apache-2.0",
    ),
    "smolvlm-256m": _chat(
        "HuggingFaceTB/SmolVLM-256M-Instruct",
        "256M instruct, CPU friendly",
        model_type="idefics3",
        params_b=0.26,
        download_gb=0.5,
        good_at=SMOL,
        cpu="yes",
        licence="apache-2.0",
    ),
    "internvl3-1b": _chat(
        "OpenGVLab/InternVL3-1B-hf",
        "InternVL3 1B instruct",
        model_type="internvl",
        params_b=0.94,
        download_gb=1.9,
        good_at=INTERNVL,
        cpu="yes",
        licence="mit",
    ),
    "internvl3-2b": _chat(
        "OpenGVLab/InternVL3-2B-hf",
        "InternVL3 2B instruct",
        model_type="internvl",
        params_b=2.1,
        download_gb=4.2,
        good_at=INTERNVL,
        cpu="slow",
        licence="mit",
    ),
    "internvl3-8b": _chat(
        "OpenGVLab/InternVL3-8B-hf",
        "InternVL3 8B instruct, GPU",
        model_type="internvl",
        params_b=7.9,
        download_gb=15.9,
        good_at="strong all-rounder: detail, text, charts, documents",
        cpu="no",
        licence="mit",
    ),
    "llava-onevision-0.5b": _chat(
        "llava-hf/llava-onevision-qwen2-0.5b-ov-hf",
        "LLaVA-OneVision 0.5B; many image tokens per image",
        model_type="llava_onevision",
        params_b=0.89,
        download_gb=1.8,
        good_at=ONEVISION,
        cpu="slow",
        licence="apache-2.0",
    ),
    "llava-onevision-7b": _chat(
        "llava-hf/llava-onevision-qwen2-7b-ov-hf",
        "LLaVA-OneVision 7B, GPU",
        model_type="llava_onevision",
        params_b=8.0,
        download_gb=16.1,
        good_at=ONEVISION,
        cpu="no",
        licence="apache-2.0",
    ),
    "joycaption-beta-one": _joycaption(),
    "paligemma2-3b": _chat(
        "google/paligemma2-3b-mix-448",
        "PaliGemma 2 3B mix, 448 px; prompted with task prefixes (caption en, describe en); gated",
        model_type="paligemma",
        params_b=3.0,
        download_gb=6.1,
        good_at="short captions and descriptions in many languages, text in images, from a task prefix",
        cpu="slow",
        licence="gemma",
        gated=True,
    ),
    "llava-1.5-7b": _chat(
        "llava-hf/llava-1.5-7b-hf",
        "7B instruct, GPU",
        model_type="llava",
        params_b=7.1,
        download_gb=14.1,
        good_at="classic LLaVA captions and questions",
        cpu="no",
        licence="llama2",
    ),
}
