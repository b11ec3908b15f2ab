"""Tiny stock-layout checkpoints of the 2025-26 chat VLM families: Gemma 3, Qwen2-VL, Qwen3-VL (dense, MoE).

Each is saved as its hub repo lays it out (config.json, generation_config.json, tokenizer files, processor
and image/video preprocessor configs, chat template) with weights scaled so that greedy output depends on
both the image and the prompt. Chat templates keep the real ones' structure (BOS, turns, image markers).
"""

from __future__ import annotations

from pathlib import Path

from descry.bench.configs import QWEN_TEMPLATE
from tests.tiny.hf_vlm import QWEN_SPECIALS
from tests.tiny.vlm_kit import TEXT, fast_tokenizer, finish, ids, scaled

SIGLIP = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}

GEMMA3_TEMPLATE = (
    "{{ bos_token }}{%- set loop_messages = messages -%}"
    "{%- for message in loop_messages -%}"
    "{%- if message['role'] == 'assistant' -%}{%- set role = 'model' -%}{%- else -%}"
    "{%- set role = message['role'] -%}{%- endif -%}"
    "{{ '<start_of_turn>' + role + '\n' }}"
    "{%- if message['content'] is string -%}{{ message['content'] | trim }}"
    "{%- else -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{{ '<start_of_image>' }}"
    "{%- elif item['type'] == 'text' -%}{{ item['text'] | trim }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}{{ '<end_of_turn>\n' }}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)
GEMMA_SPECIALS = [
    "<pad>",
    "<eos>",
    "<bos>",
    "<unk>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<start_of_image>",
    "<end_of_image>",
    "<image_soft_token>",
]


def build_tiny_gemma3(path: Path) -> Path:
    """Gemma 3: SigLIP on 32 px, 4 soft tokens per image, a BOS-first template, eos ids [1, 106]."""
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3ImageProcessorPil, Gemma3Processor

    tokenizer = fast_tokenizer(
        GEMMA_SPECIALS,
        "metaspace",
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        add_bos_token=True,
        extra_special_tokens={
            "boi_token": "<start_of_image>",
            "eoi_token": "<end_of_image>",
            "image_token": "<image_soft_token>",
        },
    )
    tok = ids(tokenizer, *GEMMA_SPECIALS)
    image_processor = Gemma3ImageProcessorPil(size={"height": 32, "width": 32})
    config = Gemma3Config(
        text_config={
            **TEXT,
            "vocab_size": len(tokenizer),
            "sliding_window": 64,
            "bos_token_id": tok["<bos>"],
            "eos_token_id": tok["<eos>"],
            "pad_token_id": tok["<pad>"],
        },
        vision_config={**SIGLIP, "image_size": 32, "patch_size": 8},
        mm_tokens_per_image=4,
        boi_token_index=tok["<start_of_image>"],
        eoi_token_index=tok["<end_of_image>"],
        image_token_index=tok["<image_soft_token>"],
    )
    model = scaled(Gemma3ForConditionalGeneration(config), factor=20.0)
    processor = Gemma3Processor(image_processor, tokenizer, chat_template=GEMMA3_TEMPLATE, image_seq_length=4)
    generation = {"eos_token_id": [tok["<eos>"], tok["<end_of_turn>"]], "pad_token_id": tok["<pad>"]}
    return finish(path, model, processor, generation=generation)


QWEN_VIDEO = {"fps": 2.0, "min_frames": 4, "max_frames": 768, "merge_size": 2, "patch_size": 14}


def build_tiny_qwen2_vl(path: Path) -> Path:
    """Qwen2-VL: 14 px patches merged 2x2, images between 4 and 16 merged tokens."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessorPil

    from descry.backends.hf_processors import image_only_processor_class

    tokenizer = fast_tokenizer(
        QWEN_SPECIALS,
        "bytelevel",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
    )
    tok = ids(tokenizer, *QWEN_SPECIALS)
    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16, patch_size=14, temporal_patch_size=2, merge_size=2
    )
    config = Qwen2VLConfig(
        text_config={
            **TEXT,
            "vocab_size": len(tokenizer),
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
            "bos_token_id": tok["<|endoftext|>"],
            "eos_token_id": tok["<|im_end|>"],
        },
        vision_config={
            "depth": 2,
            "embed_dim": 32,
            "hidden_size": 64,
            "num_heads": 2,
            "mlp_ratio": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        image_token_id=tok["<|image_pad|>"],
        video_token_id=tok["<|video_pad|>"],
        vision_start_token_id=tok["<|vision_start|>"],
        vision_end_token_id=tok["<|vision_end|>"],
    )
    model = scaled(Qwen2VLForConditionalGeneration(config))
    processor = image_only_processor_class("qwen2_vl")(image_processor, tokenizer, chat_template=QWEN_TEMPLATE)
    generation = {
        "eos_token_id": [tok["<|im_end|>"], tok["<|endoftext|>"]],
        "pad_token_id": tok["<|endoftext|>"],
        "do_sample": True,
        "top_k": 1,
        "top_p": 0.001,
        "temperature": 0.01,
    }
    video = {**QWEN_VIDEO, "video_processor_type": "Qwen2VLVideoProcessor", "processor_class": "Qwen2VLProcessor"}
    return finish(path, model, processor, processor_class="Qwen2VLProcessor", generation=generation, video=video)


def _qwen3_vl(path: Path, moe: bool) -> Path:
    from transformers import AutoModelForImageTextToText, Qwen2VLImageProcessorPil, Qwen3VLConfig, Qwen3VLMoeConfig

    from descry.backends.hf_processors import image_only_processor_class

    tokenizer = fast_tokenizer(
        QWEN_SPECIALS,
        "bytelevel",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
    )
    tok = ids(tokenizer, *QWEN_SPECIALS)
    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=32 * 32 * 4, max_pixels=32 * 32 * 16, patch_size=16, temporal_patch_size=2, merge_size=2
    )
    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3], "mrope_interleaved": True}
    text = {**TEXT, "vocab_size": len(tokenizer), "rope_parameters": rope, "eos_token_id": tok["<|im_end|>"]}
    if moe:
        text.update(moe_intermediate_size=32, num_experts=4, num_experts_per_tok=2, decoder_sparse_step=1)
    vision = {
        "depth": 2,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_heads": 2,
        "patch_size": 16,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "out_hidden_size": 64,
        "num_position_embeddings": 64,
        "deepstack_visual_indexes": [1],
    }
    config = (Qwen3VLMoeConfig if moe else Qwen3VLConfig)(
        text_config=text,
        vision_config=vision,
        image_token_id=tok["<|image_pad|>"],
        video_token_id=tok["<|video_pad|>"],
        vision_start_token_id=tok["<|vision_start|>"],
        vision_end_token_id=tok["<|vision_end|>"],
    )
    model = scaled(AutoModelForImageTextToText.from_config(config))
    processor = image_only_processor_class("qwen3_vl")(image_processor, tokenizer, chat_template=QWEN_TEMPLATE)
    generation = {
        "eos_token_id": [tok["<|im_end|>"], tok["<|endoftext|>"]],
        "pad_token_id": tok["<|endoftext|>"],
        "do_sample": True,
        "top_k": 20,
        "top_p": 0.8,
        "temperature": 0.7,
        "repetition_penalty": 1.0,
    }
    video = {
        **QWEN_VIDEO,
        "patch_size": 16,
        "video_processor_type": "Qwen3VLVideoProcessor",
        "processor_class": "Qwen3VLProcessor",
    }
    return finish(path, model, processor, processor_class="Qwen3VLProcessor", generation=generation, video=video)


def build_tiny_qwen3_vl(path: Path) -> Path:
    """Qwen3-VL (dense): 16 px patches merged 2x2, DeepStack from vision layer 1, interleaved M-RoPE."""
    return _qwen3_vl(path, moe=False)


def build_tiny_qwen3_vl_moe(path: Path) -> Path:
    """Qwen3-VL MoE (the 30B-A3B architecture): four experts, two per token."""
    return _qwen3_vl(path, moe=True)


GEMMA4_TEMPLATE = (
    "{{ bos_token }}{%- for message in messages -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<|turn>' + role + '\n' }}"
    "{%- if message['content'] is string -%}{{ message['content'] | trim }}"
    "{%- else -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{{ '\n\n<|image|>\n\n' }}"
    "{%- elif item['type'] == 'text' -%}{{ item['text'] | trim }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}{{ '<turn|>\n' }}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|turn>model\n' }}{%- endif -%}"
)
GEMMA4_SPECIALS = [
    "<pad>",
    "<eos>",
    "<bos>",
    "<unk>",
    "<|turn>",
    "<turn|>",
    "<|image>",
    "<image|>",
    "<|image|>",
    "<|audio>",
    "<audio|>",
    "<|audio|>",
    "<|video|>",
]


def build_tiny_gemma4(path: Path) -> Path:
    """Gemma 4: 4 px patches pooled 3x3, at most 70 soft tokens an image (aspect kept), per-layer embeddings."""
    from transformers import (
        Gemma4AudioFeatureExtractor,
        Gemma4Config,
        Gemma4ForConditionalGeneration,
        Gemma4ImageProcessorPil,
    )

    from descry.backends.hf_processors import image_only_processor_class, still_video_processor

    tokenizer = fast_tokenizer(
        GEMMA4_SPECIALS,
        "metaspace",
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        add_bos_token=True,
        extra_special_tokens={
            "boi_token": "<|image>",
            "eoi_token": "<image|>",
            "image_token": "<|image|>",
            "boa_token": "<|audio>",
            "eoa_token": "<audio|>",
            "audio_token": "<|audio|>",
        },
    )
    tok = ids(tokenizer, *GEMMA4_SPECIALS)
    image_processor = Gemma4ImageProcessorPil(patch_size=4, max_soft_tokens=70, pooling_kernel_size=3)
    config = Gemma4Config(
        text_config={
            **TEXT,
            "vocab_size": len(tokenizer),
            "vocab_size_per_layer_input": len(tokenizer),
            "hidden_size_per_layer_input": 8,
            "sliding_window": 64,
            "layer_types": ["sliding_attention", "full_attention"],
            "global_head_dim": 16,
            "bos_token_id": tok["<bos>"],
            "eos_token_id": tok["<eos>"],
            "pad_token_id": tok["<pad>"],
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "patch_size": 4,
            "pooling_kernel_size": 3,
            "position_embedding_size": 256,
        },
        audio_config=None,
        boi_token_id=tok["<|image>"],
        eoi_token_id=tok["<image|>"],
        image_token_id=tok["<|image|>"],
        video_token_id=tok["<|video|>"],
        boa_token_id=tok["<|audio>"],
        eoa_token_index=tok["<audio|>"],
        audio_token_id=tok["<|audio|>"],
    )
    model = scaled(Gemma4ForConditionalGeneration(config), factor=20.0)
    processor = image_only_processor_class("gemma4")(
        Gemma4AudioFeatureExtractor(),
        image_processor,
        tokenizer,
        still_video_processor(),
        chat_template=GEMMA4_TEMPLATE,
        image_seq_length=70,
    )
    generation = {"eos_token_id": [tok["<eos>"], tok["<turn|>"]], "pad_token_id": tok["<pad>"]}
    video = {"video_processor_type": "Gemma4VideoProcessor", "processor_class": "Gemma4Processor"}
    return finish(path, model, processor, processor_class="Gemma4Processor", generation=generation, video=video)
