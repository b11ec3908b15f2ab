"""The published sizes of the benchmark's models, written down as facts (nothing is downloaded).

BLIP-base is ``Salesforce/blip-image-captioning-base``, Qwen2.5-VL-7B is ``Qwen/Qwen2.5-VL-7B-Instruct``,
Phi-3.5-vision is ``microsoft/Phi-3.5-vision-instruct``; each ``*_TINY`` keeps the architecture but
shrinks it, for the smoke test. Special tokens sit at their real ids.
"""

from __future__ import annotations

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

QWEN_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

BLIP_BASE = {
    "vision": {
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "image_size": 384,
        "patch_size": 16,
        "layer_norm_eps": 1e-5,
    },
    "text": {
        "vocab_size": 30524,
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "encoder_hidden_size": 768,
        "max_position_embeddings": 512,
    },
    "projection_dim": 512,
}
BLIP_TINY = {
    "vision": {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "image_size": 32,
        "patch_size": 8,
        "layer_norm_eps": 1e-5,
    },
    "text": {
        "vocab_size": 30524,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "encoder_hidden_size": 32,
        "max_position_embeddings": 128,
    },
    "projection_dim": 32,
}

QWEN25_VL_7B = {
    "text": {
        "vocab_size": 152064,
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "max_position_embeddings": 128000,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": False,
        "sliding_window": 32768,
        "max_window_layers": 28,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
    },
    "vision": {
        "depth": 32,
        "hidden_size": 1280,
        "intermediate_size": 3420,
        "num_heads": 16,
        "out_hidden_size": 3584,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "window_size": 112,
        "fullatt_block_indexes": [7, 15, 23, 31],
        "tokens_per_second": 2,
        "hidden_act": "silu",
    },
}
QWEN25_VL_TINY = {
    "text": {
        "vocab_size": 152064,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": False,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]},
    },
    "vision": {
        "depth": 2,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_heads": 2,
        "out_hidden_size": 64,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "window_size": 56,
        "fullatt_block_indexes": [1],
        "hidden_act": "silu",
    },
}
# Qwen2 vocabulary: 151643 regular tokens, then these specials from id 151643 on
QWEN_SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
QWEN_REGULAR = 151643

PHI35_VISION = {
    "lm": {
        "vocab_size": 32064,
        "hidden_size": 3072,
        "intermediate_size": 8192,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "max_position_embeddings": 131072,
        "original_max_position_embeddings": 4096,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "sliding_window": 262144,
    },
    # openai/clip-vit-large-patch14-336
    "clip": {
        "hidden_size": 1024,
        "intermediate_size": 4096,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "image_size": 336,
        "patch_size": 14,
        "projection_dim": 768,
        "hidden_act": "quick_gelu",
    },
    "num_img_tokens": 144,
}
PHI35_TINY = {
    "lm": {
        "vocab_size": 32064,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "max_position_embeddings": 4096,
        "original_max_position_embeddings": 4096,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "sliding_window": 262144,
    },
    "clip": {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": 28,
        "patch_size": 7,
        "projection_dim": 32,
        "hidden_act": "quick_gelu",
    },
    "num_img_tokens": 4,
}
# Phi-3 (Llama) vocabulary: 32000 regular tokens (<unk>, <s>, </s> first), then the chat specials
PHI_SPECIALS = {
    "<|endoftext|>": 32000,
    "<|assistant|>": 32001,
    "<|system|>": 32006,
    "<|end|>": 32007,
    "<|user|>": 32010,
}
PHI_REMOTE_FILES = [
    "configuration_phi3_v.py",
    "modeling_phi3_v.py",
    "image_embedding_phi3_v.py",
    "image_processing_phi3_v.py",
    "processing_phi3_v.py",
]

# florence-community/Florence-2-base: DaViT (the defaults of Florence2VisionConfig, projection to 768)
# at 768x768 px (577 image tokens), BART-base-sized encoder-decoder (6 + 6 layers, 768 wide)
FLORENCE2_BASE = {
    "vision": {
        "depths": [1, 1, 9, 1],
        "patch_size": [7, 3, 3, 3],
        "patch_stride": [4, 2, 2, 2],
        "patch_padding": [3, 1, 1, 1],
        "patch_prenorm": [False, True, True, True],
        "embed_dim": [128, 256, 512, 1024],
        "num_heads": [4, 8, 16, 32],
        "num_groups": [4, 8, 16, 32],
        "window_size": 12,
        "projection_dim": 768,
        "max_position_embeddings": 50,
        "max_temporal_embeddings": 100,
    },
    "text": {
        "d_model": 768,
        "encoder_layers": 6,
        "decoder_layers": 6,
        "encoder_attention_heads": 12,
        "decoder_attention_heads": 12,
        "encoder_ffn_dim": 3072,
        "decoder_ffn_dim": 3072,
        "max_position_embeddings": 1024,
    },
    "image_size": 768,
}
FLORENCE2_TINY = {
    "vision": {
        "depths": [1, 1],
        "patch_size": [7, 3],
        "patch_stride": [4, 2],
        "patch_padding": [3, 1],
        "patch_prenorm": [False, True],
        "embed_dim": [16, 32],
        "num_heads": [1, 2],
        "num_groups": [1, 2],
        "window_size": 2,
        "projection_dim": 32,
        "max_position_embeddings": 16,
        "max_temporal_embeddings": 4,
    },
    "text": {
        "d_model": 32,
        "encoder_layers": 1,
        "decoder_layers": 1,
        "encoder_attention_heads": 2,
        "decoder_attention_heads": 2,
        "encoder_ffn_dim": 64,
        "decoder_ffn_dim": 64,
        "max_position_embeddings": 128,
    },
    "image_size": 32,
}
# BART's 50265 tokens, then Florence-2's task and location tokens (51289), then <image>
FLORENCE_BART_VOCAB = 50265
FLORENCE_TAGS = [
    "<od>", "</od>", "<ocr>", "</ocr>", "<cap>", "</cap>", "<ncap>", "</ncap>", "<dcap>", "</dcap>",
    "<grounding>", "</grounding>", "<seg>", "</seg>", "<sep>", "<region_cap>", "</region_cap>",
    "<region_to_desciption>", "</region_to_desciption>", "<proposal>", "</proposal>", "<poly>", "</poly>",
    "<and>",
]  # fmt: skip
FLORENCE_POST_PROCESSOR = {
    "ocr": {"pattern": r"(.+?)" + r"<loc_(\d+)>" * 8, "area_threshold": 0.0},
    "phrase_grounding": {"banned_grounding_tokens": ["the image"]},
    "pure_text": {},
    "description_with_bboxes": {},
    "description_with_polygons": {},
    "polygons": {},
    "bboxes": {},
    "description_with_bboxes_or_polygons": {},
}
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]

# HuggingFaceTB/SmolVLM-256M-Instruct (Idefics3): SigLIP-B/16 at 512 px tiles (64 tokens a tile after the
# 4x pixel shuffle), SmolLM2-135M decoder (30 x 576, GQA 9/3); images are resized to a 2048 px longest edge
# and split into 512 px tiles plus a global one, as its published preprocessor config says
SMOLVLM_256M = {
    "vision": {
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "image_size": 512,
        "patch_size": 16,
    },
    "text": {
        "model_type": "llama",
        "vocab_size": 49280,
        "hidden_size": 576,
        "intermediate_size": 1536,
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "max_position_embeddings": 8192,
        "rms_norm_eps": 1e-5,
        "rope_theta": 100000.0,
        "tie_word_embeddings": True,
    },
    "scale_factor": 4,
    "longest_edge": 2048,
}
SMOLVLM_TINY = {
    "vision": {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "image_size": 32,
        "patch_size": 8,
    },
    "text": {
        "model_type": "llama",
        "vocab_size": 49280,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 2048,
        "tie_word_embeddings": True,
    },
    "scale_factor": 2,
    "longest_edge": 64,
}
SMOLVLM_REGULAR = 49152  # SmolLM2's vocabulary; <|endoftext|>, <|im_start|>, <|im_end|> are ids 0-2
SMOLVLM_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}:"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
)
