"""A tiny Phi-3.5-vision model directory: remote code (``auto_map``), config, tokenizer, random weights.

The remote code is the compact re-implementation in ``tests/tiny/phi3v_remote/`` (copied into the
directory). The weights are written without importing it: the decoder comes from transformers'
native ``Phi3ForCausalLM`` and the vision tower from ``CLIPVisionModel``, under the parameter
names the remote ``Phi3VForCausalLM`` uses, so loading the directory is the only path through the
remote code (and through descry's compatibility shim).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

REMOTE_DIR = Path(__file__).parent / "phi3v_remote"
REMOTE_FILES = ["configuration_phi3_v.py", "modeling_phi3_v.py", "image_embedding_phi3_v.py",
                "image_processing_phi3_v.py", "processing_phi3_v.py"]
SPECIAL_TOKENS = ["<unk>", "<s>", "<|endoftext|>", "<|user|>", "<|assistant|>", "<|end|>", "<|image_1|>"]
CORPUS = [
    "Describe this image in one sentence.",
    "A photo of a dog running on the beach at sunset.",
    "A red car parked in a narrow street next to old houses.",
    "Two cats sleeping on a couch by the window.",
    "An aerial view of green fields, a river and a small town.",
]
CROP_SIZE = 28
PATCH_SIZE = 7
MERGED_SIDE = CROP_SIZE // PATCH_SIZE // 2
LM = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4}
CLIP = {
    "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
    "image_size": CROP_SIZE, "patch_size": PATCH_SIZE, "projection_dim": 32, "hidden_act": "quick_gelu",
}


def _tokenizer() -> Any:
    """A byte-level BPE tokenizer trained on a few sentences, with Phi-3's chat and image tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    raw.train_from_iterator(CORPUS * 4, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=raw, bos_token="<s>", eos_token="<|endoftext|>", pad_token="<|endoftext|>",
        unk_token="<unk>", padding_side="left",
    )


def _config(tokenizer: Any) -> dict[str, Any]:
    end_id = tokenizer.convert_tokens_to_ids("<|end|>")
    return {
        "architectures": ["Phi3VForCausalLM"],
        "auto_map": {
            "AutoConfig": "configuration_phi3_v.Phi3VConfig",
            "AutoModelForCausalLM": "modeling_phi3_v.Phi3VForCausalLM",
        },
        "model_type": "phi3_v",
        # the published config asks for flash attention; loaders must override it where it is unavailable
        "_attn_implementation": "flash_attention_2",
        "vocab_size": len(tokenizer),
        **LM,
        "num_key_value_heads": LM["num_attention_heads"],
        "max_position_embeddings": 4096,
        "original_max_position_embeddings": 4096,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": [end_id, tokenizer.eos_token_id],
        "pad_token_id": tokenizer.pad_token_id,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "embd_layer": {
            "embedding_cls": "image", "hd_transform_order": "sub_glb", "projection_cls": "mlp",
            "use_hd_transform": True, "with_learnable_separator": True,
        },
        "img_processor": {
            "name": "clip_vision_model", "model_name": "tiny-clip", "image_dim_out": CLIP["hidden_size"],
            "num_img_tokens": MERGED_SIDE * MERGED_SIDE, "clip_config": CLIP,
        },
    }


def _preprocessor_config(num_crops: int) -> dict[str, Any]:
    return {
        "auto_map": {
            "AutoImageProcessor": "image_processing_phi3_v.Phi3VImageProcessor",
            "AutoProcessor": "processing_phi3_v.Phi3VProcessor",
        },
        "image_processor_type": "Phi3VImageProcessor",
        "processor_class": "Phi3VProcessor",
        "num_crops": num_crops,
        "crop_size": CROP_SIZE,
        "num_img_tokens": MERGED_SIDE * MERGED_SIDE,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "do_convert_rgb": True,
    }


def _weights(config: dict[str, Any]) -> dict[str, Any]:
    """Random weights under the remote model's parameter names, built from native modules."""
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModel, Phi3Config, Phi3ForCausalLM

    torch.manual_seed(0)
    keys = (*LM, "vocab_size", "num_key_value_heads", "pad_token_id", "bos_token_id", "eos_token_id")
    lm_config = Phi3Config(**{k: config[k] for k in keys})
    state = dict(Phi3ForCausalLM(lm_config).state_dict())
    vision = CLIPVisionModel(CLIPVisionConfig(**CLIP))
    prefix = "model.vision_embed_tokens."
    state.update({prefix + "img_processor." + k: v for k, v in vision.state_dict().items()})
    merged = 4 * CLIP["hidden_size"]
    hidden = LM["hidden_size"]
    state.update({
        prefix + "glb_GN": torch.randn(1, 1, merged) * 0.02,
        prefix + "sub_GN": torch.randn(1, 1, 1, merged) * 0.02,
        prefix + "img_projection.0.weight": torch.randn(hidden, merged) * 0.02,
        prefix + "img_projection.0.bias": torch.zeros(hidden),
        prefix + "img_projection.2.weight": torch.randn(hidden, hidden) * 0.02,
        prefix + "img_projection.2.bias": torch.zeros(hidden),
    })
    return {k: v.contiguous() for k, v in state.items() if "rotary_emb" not in k and "position_ids" not in k}


def build_tiny_phi3v(path: Path, num_crops: int = 4) -> Path:
    """Write a tiny Phi-3.5-vision model directory (remote code included) into ``path`` and return it."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    for name in REMOTE_FILES:
        shutil.copyfile(REMOTE_DIR / name, path / name)
    tokenizer = _tokenizer()
    tokenizer.save_pretrained(path)
    config = _config(tokenizer)
    (path / "config.json").write_text(json.dumps(config, indent=2))
    (path / "preprocessor_config.json").write_text(json.dumps(_preprocessor_config(num_crops), indent=2))
    generation = {"bos_token_id": config["bos_token_id"], "eos_token_id": config["eos_token_id"],
                  "pad_token_id": config["pad_token_id"]}
    (path / "generation_config.json").write_text(json.dumps(generation, indent=2))
    save_file(_weights(config), str(path / "model.safetensors"), metadata={"format": "pt"})
    return path
