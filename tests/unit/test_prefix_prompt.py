"""What hf_vlm sends as text: BOS added only when the chat template has none; PaliGemma's task prefixes."""

from __future__ import annotations

from types import SimpleNamespace

from descry.backends import prefix_prompt
from descry.backends.base import BRIEF, DETAILED


def processor(bos: str | None) -> SimpleNamespace:
    return SimpleNamespace(tokenizer=SimpleNamespace(bos_token=bos), image_token="<image>")


def test_a_template_that_writes_bos_gets_no_second_one() -> None:
    assert prefix_prompt.adds_special_tokens(processor("<bos>"), "<bos><start_of_turn>user\n") is False


def test_a_template_without_bos_gets_the_tokenizers() -> None:
    assert prefix_prompt.adds_special_tokens(processor("<s>"), "USER: <image>\nhi ASSISTANT:") is True
    assert prefix_prompt.adds_special_tokens(processor(None), "<|im_start|>user\n") is True


def test_descrys_prompts_become_paligemma_tasks_and_a_users_prompt_is_the_prefix() -> None:
    p = processor("<bos>")
    assert prefix_prompt.prefix_text(p, BRIEF) == "<image>caption en"
    assert prefix_prompt.prefix_text(p, DETAILED) == "<image>describe en"
    assert prefix_prompt.prefix_text(p, None) == "<image>caption en"
    assert prefix_prompt.prefix_text(p, "answer en what colour is the car") == "<image>answer en what colour is the car"


def test_only_paligemma_uses_a_prefix() -> None:
    assert prefix_prompt.uses_prefix("paligemma")
    assert not prefix_prompt.uses_prefix("gemma3")


def test_the_chat_turn_puts_the_image_before_the_instruction() -> None:
    (turn,) = prefix_prompt.chat_messages("Describe it.")
    assert turn["role"] == "user"
    assert [part["type"] for part in turn["content"]] == ["image", "text"]
