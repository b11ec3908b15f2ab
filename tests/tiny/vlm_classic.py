"""Tiny stock-layout checkpoints of PaliGemma 2 (task prefixes), Llama 3.2 Vision (Mllama) and LLaVA-NeXT."""

from __future__ import annotations

from pathlib import Path

from tests.tiny.vlm_families import GEMMA_SPECIALS
from tests.tiny.vlm_kit import TEXT, fast_tokenizer, finish, ids, scaled

SIGLIP_32 = {
    "model_type": "siglip_vision_model",
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "image_size": 32,
    "patch_size": 8,
}


def build_tiny_paligemma2(path: Path) -> Path:
    """PaliGemma 2 (mix): SigLIP on 32 px (16 image tokens), Gemma 2 text, no chat template: task prefixes."""
    from transformers import (
        PaliGemmaConfig,
        PaliGemmaForConditionalGeneration,
        PaliGemmaProcessor,
        SiglipImageProcessorPil,
    )

    specials = [*GEMMA_SPECIALS[:4], "<image>"]
    tokenizer = fast_tokenizer(
        specials,
        "metaspace",
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        add_bos_token=True,
        extra_special_tokens={"image_token": "<image>"},
    )
    image_processor = SiglipImageProcessorPil(size={"height": 32, "width": 32})
    image_processor.image_seq_length = 16
    processor = PaliGemmaProcessor(image_processor, tokenizer)
    tok = ids(processor.tokenizer, *specials)
    config = PaliGemmaConfig(
        vision_config={**SIGLIP_32, "projection_dim": 64},
        text_config={
            **TEXT,
            "model_type": "gemma2",
            "vocab_size": len(processor.tokenizer),
            "sliding_window": 64,
            "bos_token_id": tok["<bos>"],
            "eos_token_id": tok["<eos>"],
            "pad_token_id": tok["<pad>"],
        },
        image_token_index=tok["<image>"],
        projection_dim=64,
        hidden_size=64,
    )
    model = scaled(PaliGemmaForConditionalGeneration(config))
    generation = {
        "bos_token_id": tok["<bos>"],
        "eos_token_id": tok["<eos>"],
        "pad_token_id": tok["<pad>"],
    }
    return finish(path, model, processor, generation=generation)


MLLAMA_TEMPLATE = (
    "{{- bos_token }}{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}"
    "{%- if message['content'] is string %}{{- message['content'] }}{%- else %}"
    "{%- for content in message['content'] %}{%- if content['type'] == 'image' %}{{- '<|image|>' }}"
    "{%- elif content['type'] == 'text' %}{{- content['text'] }}{%- endif %}{%- endfor %}{%- endif %}"
    "{{- '<|eot_id|>' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{%- endif %}"
)
MLLAMA_SPECIALS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|python_tag|>",
    "<|finetune_right_pad_id|>",
    "<|image|>",
]


def build_tiny_mllama(path: Path) -> Path:
    """Llama 3.2 Vision: 28 px tiles (up to 4), a cross-attention layer, a BOS-first template."""
    from transformers import MllamaConfig, MllamaForConditionalGeneration, MllamaImageProcessorPil, MllamaProcessor

    tokenizer = fast_tokenizer(
        MLLAMA_SPECIALS,
        "bytelevel",
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>",
        pad_token="<|finetune_right_pad_id|>",
        add_bos_token=True,
        extra_special_tokens={"image_token": "<|image|>"},
    )
    tok = ids(tokenizer, *MLLAMA_SPECIALS)
    image_processor = MllamaImageProcessorPil(size={"height": 28, "width": 28}, max_image_tiles=4)
    config = MllamaConfig(
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_global_layers": 1,
            "attention_heads": 2,
            "image_size": 28,
            "patch_size": 14,
            "max_num_tiles": 4,
            "intermediate_layers_indices": [0, 1],
            "vision_output_dim": 96,
        },
        text_config={
            **TEXT,
            "vocab_size": len(tokenizer),
            "cross_attention_layers": [1],
            "bos_token_id": tok["<|begin_of_text|>"],
            "eos_token_id": tok["<|eot_id|>"],
            "pad_token_id": tok["<|finetune_right_pad_id|>"],
        },
        image_token_index=tok["<|image|>"],
    )
    model = scaled(MllamaForConditionalGeneration(config))
    for name, param in model.named_parameters():
        if name.endswith("_gate"):  # zero-initialised tanh gates would shut the image out
            param.data.fill_(1.0)
    processor = MllamaProcessor(image_processor, tokenizer, chat_template=MLLAMA_TEMPLATE)
    generation = {
        "bos_token_id": tok["<|begin_of_text|>"],
        "eos_token_id": [tok["<|end_of_text|>"], tok["<|eot_id|>"]],
        "pad_token_id": tok["<|finetune_right_pad_id|>"],
    }
    return finish(path, model, processor, generation=generation)


LLAVA_NEXT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' }}{% endif %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] }}"
    "{% endfor %}{% if message['role'] == 'user' %}{{ ' [/INST]' }}{% else %}{{ eos_token }}{% endif %}"
    "{% endfor %}"
)
LLAVA_NEXT_SPECIALS = ["<unk>", "<s>", "</s>", "<image>", "<pad>"]


def build_tiny_llava_next(path: Path) -> Path:
    """LLaVA-NeXT (1.6, Mistral): CLIP on 32 px, anyres up to 64x64, the tokenizer adds BOS (template has none)."""
    from transformers import (
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessorPil,
        LlavaNextProcessor,
    )

    tokenizer = fast_tokenizer(
        LLAVA_NEXT_SPECIALS,
        "metaspace",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        add_bos_token=True,
        extra_special_tokens={"image_token": "<image>"},
    )
    tok = ids(tokenizer, *LLAVA_NEXT_SPECIALS)
    grid = [[32, 32], [32, 64], [64, 32], [64, 64]]
    image_processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, image_grid_pinpoints=grid
    )
    config = LlavaNextConfig(
        vision_config={**SIGLIP_32, "model_type": "clip_vision_model", "projection_dim": 32},
        text_config={
            **TEXT,
            "model_type": "mistral",
            "vocab_size": len(tokenizer),
            "sliding_window": None,
            "bos_token_id": tok["<s>"],
            "eos_token_id": tok["</s>"],
            "pad_token_id": tok["<pad>"],
        },
        image_token_index=tok["<image>"],
        image_grid_pinpoints=grid,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
    )
    model = scaled(LlavaNextForConditionalGeneration(config))
    processor = LlavaNextProcessor(
        image_processor,
        tokenizer,
        patch_size=8,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=LLAVA_NEXT_TEMPLATE,
    )
    generation = {"eos_token_id": tok["</s>"], "pad_token_id": tok["<pad>"]}
    return finish(path, model, processor, generation=generation)
