"""Tiny stock-layout checkpoints of the tiling chat VLMs: SmolVLM2, InternVL 3/3.5 (-hf), LLaVA-OneVision.

Each processor builds a video processor in its stock form; the checkpoints carry the video preprocessor
config a hub repo has, and the processor settings (``image_seq_len``, ``image_seq_length``,
``num_image_tokens``, ``vision_feature_select_strategy``) in processor_config.json.
"""

from __future__ import annotations

from pathlib import Path

from tests.tiny.vlm_kit import TEXT, fast_tokenizer, finish, ids, scaled

SMOLVLM2_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{ line['text'] }}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
SMOLVLM_SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<end_of_utterance>",
    "<fake_token_around_image>",
    "<image>",
    "<global-img>",
    *[f"<row_{r}_col_{c}>" for r in range(1, 4) for c in range(1, 4)],
]


def build_tiny_smolvlm2(path: Path) -> Path:
    """SmolVLM2: 32 px tiles of 4 image tokens, up to 2x2 tiles plus the global image; BOS opens the template."""
    from transformers import SmolVLMConfig, SmolVLMForConditionalGeneration, SmolVLMImageProcessorPil

    from descry.backends.hf_processors import image_only_processor_class, still_video_processor

    tokenizer = fast_tokenizer(
        SMOLVLM_SPECIALS,
        "bytelevel",
        bos_token="<|im_start|>",
        eos_token="<end_of_utterance>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
        extra_special_tokens={
            "fake_image_token": "<fake_token_around_image>",
            "image_token": "<image>",
            "end_of_utterance_token": "<end_of_utterance>",
            "global_image_token": "<global-img>",
        },
    )
    tok = ids(tokenizer, *SMOLVLM_SPECIALS[:6])
    image_processor = SmolVLMImageProcessorPil(
        size={"longest_edge": 64}, max_image_size={"longest_edge": 32}, do_image_splitting=True
    )
    config = SmolVLMConfig(
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        text_config={**TEXT, "model_type": "llama", "vocab_size": len(tokenizer), "pad_token_id": tok["<|im_end|>"]},
        image_token_id=tok["<image>"],
        scale_factor=2,
    )
    model = scaled(SmolVLMForConditionalGeneration(config))
    video = {"num_frames": 64, "fps": 1, "size": {"longest_edge": 64}}
    processor = image_only_processor_class("smolvlm")(
        image_processor, tokenizer, still_video_processor(), image_seq_len=4, chat_template=SMOLVLM2_TEMPLATE
    )
    generation = {
        "bos_token_id": tok["<|im_start|>"],
        "eos_token_id": [tok["<end_of_utterance>"], tok["<|im_end|>"]],
        "pad_token_id": tok["<|im_end|>"],
    }
    video.update(video_processor_type="SmolVLMVideoProcessor", processor_class="SmolVLMProcessor")
    return finish(path, model, processor, processor_class="SmolVLMProcessor", generation=generation, video=video)


INTERNVL_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}{% if content['type'] == 'image' %}{{ '<IMG_CONTEXT>\n' }}"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{{ '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
INTERNVL_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>"]


def build_tiny_internvl(path: Path) -> Path:
    """InternVL3 (-hf): InternViT on 28 px tiles (1 token each after pixel shuffle), up to 4 tiles + thumbnail."""
    from transformers import GotOcr2ImageProcessorPil, InternVLConfig, InternVLForConditionalGeneration

    from descry.backends.hf_processors import image_only_processor_class, still_video_processor

    tokenizer = fast_tokenizer(
        INTERNVL_SPECIALS,
        "bytelevel",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={
            "start_image_token": "<img>",
            "end_image_token": "</img>",
            "context_image_token": "<IMG_CONTEXT>",
            "video_token": "<video>",
        },
    )
    tok = ids(tokenizer, *INTERNVL_SPECIALS)
    image_processor = GotOcr2ImageProcessorPil(
        size={"height": 56, "width": 56}, crop_to_patches=True, min_patches=1, max_patches=4
    )
    config = InternVLConfig(
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": [56, 56],
            "patch_size": [14, 14],
        },
        text_config={**TEXT, "model_type": "qwen2", "vocab_size": len(tokenizer), "eos_token_id": tok["<|im_end|>"]},
        image_token_id=tok["<IMG_CONTEXT>"],
        image_seq_length=4,
        downsample_ratio=0.5,
    )
    model = scaled(InternVLForConditionalGeneration(config))
    processor = image_only_processor_class("internvl")(
        image_processor, tokenizer, still_video_processor(), image_seq_length=4, chat_template=INTERNVL_TEMPLATE
    )
    generation = {"eos_token_id": [tok["<|im_end|>"], tok["<|endoftext|>"]], "pad_token_id": tok["<|endoftext|>"]}
    video = {"video_processor_type": "InternVLVideoProcessor", "processor_class": "InternVLProcessor"}
    return finish(path, model, processor, processor_class="InternVLProcessor", generation=generation, video=video)


ONEVISION_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + ' ' }}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] }}"
    "{% endfor %}{{ '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    "{% endif %}"
)
ONEVISION_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]


def build_tiny_llava_onevision(path: Path) -> Path:
    """LLaVA-OneVision: SigLIP on 32 px, anyres grid up to 64x64, 'full' feature selection (16 tokens a tile)."""
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessorPil,
    )

    from descry.backends.hf_processors import image_only_processor_class, still_video_processor

    tokenizer = fast_tokenizer(
        ONEVISION_SPECIALS,
        "bytelevel",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={"image_token": "<image>", "video_token": "<video>"},
    )
    tok = ids(tokenizer, *ONEVISION_SPECIALS)
    grid = [[32, 32], [32, 64], [64, 32], [64, 64]]
    image_processor = LlavaOnevisionImageProcessorPil(size={"height": 32, "width": 32}, image_grid_pinpoints=grid)
    config = LlavaOnevisionConfig(
        vision_config={
            "model_type": "siglip_vision_model",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
            "vision_use_head": False,
        },
        text_config={**TEXT, "model_type": "qwen2", "vocab_size": len(tokenizer), "eos_token_id": tok["<|im_end|>"]},
        image_token_index=tok["<image>"],
        video_token_index=tok["<video>"],
        image_grid_pinpoints=grid,
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        vision_aspect_ratio="anyres_max_9",
    )
    model = scaled(LlavaOnevisionForConditionalGeneration(config))
    processor = image_only_processor_class("llava_onevision")(
        image_processor,
        tokenizer,
        still_video_processor(),
        num_image_tokens=16,
        vision_feature_select_strategy="full",
        chat_template=ONEVISION_TEMPLATE,
    )
    generation = {"eos_token_id": tok["<|im_end|>"], "pad_token_id": tok["<|endoftext|>"]}
    video = {"video_processor_type": "LlavaOnevisionVideoProcessor", "processor_class": "LlavaOnevisionProcessor"}
    return finish(path, model, processor, processor_class="LlavaOnevisionProcessor", generation=generation, video=video)
