"""What hf_vlm sends a model as text: its chat template rendered, or a task prefix (PaliGemma).

Chat models get one user turn (the image, then the instruction) through the processor's chat template,
exactly as ``processor.apply_chat_template(..., add_generation_prompt=True)`` builds it. PaliGemma is
prompted with a task prefix instead (``caption en``, ``describe en``, ``answer en <question>``); its
processor adds the image tokens' BOS and the closing newline itself.
"""

from __future__ import annotations

from typing import Any

from descry.backends.base import BRIEF, DETAILED

# model types prompted with a task prefix rather than a chat template
PREFIX_FAMILIES = frozenset({"paligemma"})

# descry's own brief and detailed prompts, as PaliGemma's task prefixes
TASK_PREFIXES = {BRIEF: "caption en", DETAILED: "describe en"}
DEFAULT_PREFIX = "caption en"


def chat_messages(prompt: str) -> list[dict[str, Any]]:
    """One user turn: the image, then the instruction."""
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]


def chat_text(processor: Any, prompt: str) -> str:
    """The chat template rendered with the generation prompt (its BOS included, as the template writes it)."""
    return str(processor.apply_chat_template(chat_messages(prompt), add_generation_prompt=True, tokenize=False))


def adds_special_tokens(processor: Any, text: str) -> bool:
    """Whether tokenizing a rendered chat adds BOS: not when the template wrote it (a doubled BOS otherwise).

    This is what ``processor.apply_chat_template(..., tokenize=True)`` does.
    """
    bos = processor.tokenizer.bos_token
    return not (bos is not None and text.startswith(bos))


def prefix_text(processor: Any, prompt: str | None) -> str:
    """PaliGemma's input text: the image token, then the task prefix (descry's stock prompts mapped to tasks)."""
    task = TASK_PREFIXES.get(prompt or "", prompt) or DEFAULT_PREFIX
    return f"{processor.image_token}{task}"


def uses_prefix(model_type: str) -> bool:
    return model_type in PREFIX_FAMILIES
