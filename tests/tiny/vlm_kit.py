"""Shared pieces of the tiny image-text-to-text builders: vocabularies, tokenizers, weights, stock files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from descry.bench.builders import name_processor
from tests.tiny.hf_vlm import _train_bpe

TEXT = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "max_position_embeddings": 2048,
}


def fast_tokenizer(specials: list[str], style: str, **kwargs: Any) -> Any:
    """A fast tokenizer (``TokenizersBackend``) over a BPE trained on the spot, specials first."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab, merges = _train_bpe(specials, style)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=kwargs.get("unk_token")))
    tok.add_special_tokens(specials)
    if style == "bytelevel":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
    else:
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    return PreTrainedTokenizerFast(tokenizer_object=tok, **kwargs)


def ids(tokenizer: Any, *tokens: str) -> dict[str, int]:
    return {t: int(tokenizer.convert_tokens_to_ids(t)) for t in tokens}


def scaled(model: Any, factor: float = 10.0, embed: float = 0.2) -> Any:
    """Redraw every matrix larger (embeddings by ``embed``) so greedy output follows the image and the prompt."""
    import torch

    torch.manual_seed(0)
    embeddings = {id(p) for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()}
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() >= 2:
                param.normal_(0.0, 0.02 * (embed if id(param) in embeddings else factor))
    return model.eval()


def finish(
    path: Path,
    model: Any,
    processor: Any,
    *,
    processor_class: str | None = None,
    generation: dict[str, Any] | None = None,
    video: dict[str, Any] | None = None,
) -> Path:
    """Save like the hub repo: weights, config, generation_config.json, tokenizer, processor, chat template."""
    path.mkdir(parents=True, exist_ok=True)
    for key, value in (generation or {}).items():
        setattr(model.generation_config, key, value)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    hub_layout(path)
    if processor_class:
        name_processor(path, processor_class)
    if video is not None:
        (path / "video_preprocessor_config.json").write_text(json.dumps(video, indent=2))
    return path


def hub_layout(path: Path) -> None:
    """Image processor settings in preprocessor_config.json, processor settings alone in processor_config.json."""
    processor_file = path / "processor_config.json"
    if not processor_file.is_file():
        return
    settings = json.loads(processor_file.read_text())
    image = settings.pop("image_processor", None)
    if image is None:
        return
    if "processor_class" in settings:
        image["processor_class"] = settings["processor_class"]
    (path / "preprocessor_config.json").write_text(json.dumps(image, indent=2))
    processor_file.write_text(json.dumps(settings, indent=2))
