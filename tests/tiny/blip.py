"""A tiny, randomly initialised BLIP captioning model of the real architecture, saved to a directory."""

from __future__ import annotations

from pathlib import Path

CORPUS = [
    "a photography of a dog running on the beach",
    "a picture of a red car parked in the street",
    "two cats sleeping on a couch next to a window",
    "a man riding a bicycle down a city road",
    "an aerial view of a green field with trees",
]
IMAGE_SIZE = 32


def _tokenizer():  # type: ignore[no-untyped-def]
    """A WordPiece (BERT) tokenizer trained on a few captions, with BLIP's [DEC] bos token."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import BertTokenizer

    raw = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    raw.normalizer = normalizers.BertNormalizer(lowercase=True)
    raw.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=300, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    )
    raw.train_from_iterator(CORPUS * 4, trainer)
    return BertTokenizer(vocab=raw.get_vocab(), bos_token="[DEC]", extra_special_tokens=["[ENC]"])


def build_tiny_blip(path: Path) -> Path:
    """Save a tiny BlipForConditionalGeneration + BlipProcessor into ``path`` and return it."""
    import torch
    from transformers import (
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessorPil,
        BlipProcessor,
        BlipTextConfig,
        BlipVisionConfig,
    )

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer()
    image_processor = BlipImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    processor = BlipProcessor(image_processor=image_processor, tokenizer=tokenizer)

    vision = BlipVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        image_size=IMAGE_SIZE, patch_size=8, projection_dim=32,
    )
    text = BlipTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, encoder_hidden_size=32, max_position_embeddings=128,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.sep_token_id,
        sep_token_id=tokenizer.sep_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    config = BlipConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=32)
    torch.manual_seed(0)
    model = BlipForConditionalGeneration(config).eval()
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path
