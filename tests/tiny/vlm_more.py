"""Tiny stock-layout checkpoints of Aya Vision (Cohere 2) and Mistral 3 (Pixtral vision), BOS-first templates."""

from __future__ import annotations

from pathlib import Path

from tests.tiny.vlm_classic import SIGLIP_32
from tests.tiny.vlm_kit import TEXT, fast_tokenizer, finish, ids, scaled

AYA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|START_OF_TURN_TOKEN|>"
    "{% if message['role'] == 'user' %}<|USER_TOKEN|>{% else %}<|CHATBOT_TOKEN|>{% endif %}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}{% if content['type'] == 'image' %}<image>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|END_OF_TURN_TOKEN|>{% endfor %}{% if add_generation_prompt %}<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>"
    "{% endif %}"
)
AYA_SPECIALS = [
    "<PAD>",
    "<UNK>",
    "<BOS_TOKEN>",
    "<|END_OF_TURN_TOKEN|>",
    "<|START_OF_TURN_TOKEN|>",
    "<|USER_TOKEN|>",
    "<|CHATBOT_TOKEN|>",
    "<image>",
    "<|START_OF_IMG|>",
    "<|END_OF_IMG|>",
    "<|IMG_PATCH|>",
    "<|IMG_LINE_BREAK|>",
]


def build_tiny_aya_vision(path: Path) -> Path:
    """Aya Vision: SigLIP on 32 px tiles (4 patch tokens after 2x downsampling), up to 4 tiles + thumbnail."""
    from transformers import (
        AyaVisionConfig,
        AyaVisionForConditionalGeneration,
        AyaVisionProcessor,
        GotOcr2ImageProcessorPil,
    )

    tokenizer = fast_tokenizer(
        AYA_SPECIALS,
        "bytelevel",
        bos_token="<BOS_TOKEN>",
        eos_token="<|END_OF_TURN_TOKEN|>",
        pad_token="<PAD>",
        unk_token="<UNK>",
        add_bos_token=True,
    )
    tok = ids(tokenizer, *AYA_SPECIALS)
    image_processor = GotOcr2ImageProcessorPil(
        size={"height": 32, "width": 32}, crop_to_patches=True, min_patches=1, max_patches=4
    )
    config = AyaVisionConfig(
        vision_config={**SIGLIP_32, "vision_use_head": False},
        text_config={
            **TEXT,
            "model_type": "cohere2",
            "vocab_size": len(tokenizer),
            "sliding_window": 64,
            "layer_types": ["sliding_attention", "full_attention"],
            "bos_token_id": tok["<BOS_TOKEN>"],
            "eos_token_id": tok["<|END_OF_TURN_TOKEN|>"],
            "pad_token_id": tok["<PAD>"],
        },
        downsample_factor=2,
        image_token_index=tok["<|IMG_PATCH|>"],
    )
    model = scaled(AyaVisionForConditionalGeneration(config))
    processor = AyaVisionProcessor(
        image_processor, tokenizer, patch_size=8, img_size=32, downsample_factor=2, chat_template=AYA_TEMPLATE
    )
    generation = {"eos_token_id": tok["<|END_OF_TURN_TOKEN|>"], "pad_token_id": tok["<PAD>"]}
    return finish(path, model, processor, generation=generation)


MISTRAL3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}[INST]"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}{% if content['type'] == 'image' %}[IMG]"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}[/INST]"
    "{% else %}{{ message['content'] }}{{ eos_token }}{% endif %}{% endfor %}"
)
MISTRAL_SPECIALS = ["<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[IMG]", "[IMG_BREAK]", "[IMG_END]", "<pad>"]


def build_tiny_mistral3(path: Path) -> Path:
    """Mistral 3 (Small 3.1): Pixtral vision, 8 px patches merged 2x2, images up to 64 px on the long side."""
    from transformers import Mistral3Config, Mistral3ForConditionalGeneration, PixtralImageProcessorPil

    from descry.backends.hf_processors import pixtral_processor_class

    tokenizer = fast_tokenizer(
        MISTRAL_SPECIALS,
        "metaspace",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        add_bos_token=True,
    )
    tok = ids(tokenizer, *MISTRAL_SPECIALS)
    image_processor = PixtralImageProcessorPil(size={"longest_edge": 64}, patch_size=8)
    config = Mistral3Config(
        vision_config={
            "model_type": "pixtral",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "head_dim": 16,
            "image_size": 64,
            "patch_size": 8,
        },
        text_config={
            **TEXT,
            "model_type": "mistral",
            "vocab_size": len(tokenizer),
            "sliding_window": None,
            "bos_token_id": tok["<s>"],
            "eos_token_id": tok["</s>"],
            "pad_token_id": tok["<pad>"],
        },
        image_token_index=tok["[IMG]"],
        spatial_merge_size=2,
        vision_feature_layer=-1,
    )
    model = scaled(Mistral3ForConditionalGeneration(config))
    processor = pixtral_processor_class()(
        image_processor, tokenizer, patch_size=8, spatial_merge_size=2, chat_template=MISTRAL3_TEMPLATE
    )
    generation = {"bos_token_id": tok["<s>"], "eos_token_id": tok["</s>"], "pad_token_id": tok["<pad>"]}
    return finish(path, model, processor, generation=generation)
