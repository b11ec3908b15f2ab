"""Tokenizers trained on the spot and padded with filler tokens to the real vocabulary sizes."""

from __future__ import annotations

import json
from typing import Any

from descry.bench.configs import PHI_SPECIALS, QWEN_REGULAR, QWEN_SPECIALS

CORPUS = [
    "a photography of a dog running on the beach next to the sea",
    "a picture of a red car parked in the street in front of a house",
    "two cats sleeping on a couch next to a window in the afternoon",
    "a man riding a bicycle down a city road with tall buildings",
    "an aerial view of a green field with trees, a river and a small town",
    "Describe this image in one sentence.",
    "Describe this image in detail: the subjects, setting, colours, actions and any visible text.",
    "The quick brown fox jumps over the lazy dog 0123456789.",
]


def _trained_bpe(byte_level: bool) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A small BPE vocabulary and its merges, trained on CORPUS."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    if byte_level:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    else:
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁")
        alphabet = sorted(set("".join(CORPUS)) | set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    trainer = trainers.BpeTrainer(vocab_size=600, initial_alphabet=alphabet, show_progress=False)
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return dict(model["vocab"]), merges  # type: ignore[return-value]


def padded_vocab(base: dict[str, int], size: int, start: int = 0) -> dict[str, int]:
    """``base`` renumbered from ``start``, then filler tokens up to ``size`` entries in all."""
    vocab = {tok: start + i for i, tok in enumerate(sorted(base, key=base.__getitem__))}
    index = start + len(vocab)
    while index < size:
        vocab[f"fill{index}"] = index
        index += 1
    return vocab


def blip_tokenizer() -> Any:
    """BERT WordPiece vocabulary of bert-base-uncased's size (30522) with BLIP's [DEC] and [ENC]."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import BertTokenizer

    raw = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    raw.normalizer = normalizers.BertNormalizer(lowercase=True)
    raw.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    raw.train_from_iterator(CORPUS * 4, trainers.WordPieceTrainer(vocab_size=600, show_progress=False))
    vocab = {"[PAD]": 0, **{f"[unused{i}]": i + 1 for i in range(99)}}
    vocab.update({"[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103})
    learned = {t: i for t, i in raw.get_vocab().items() if t not in vocab}
    vocab.update(padded_vocab(learned, 30522, start=104))
    return BertTokenizer(vocab=vocab, bos_token="[DEC]", extra_special_tokens=["[ENC]"])


def qwen_tokenizer() -> Any:
    """A byte-level BPE with Qwen2's 151643 regular tokens and its specials at their real ids."""
    from transformers import Qwen2Tokenizer

    base, merges = _trained_bpe(byte_level=True)
    vocab = padded_vocab(base, QWEN_REGULAR)
    vocab.update({tok: QWEN_REGULAR + i for i, tok in enumerate(QWEN_SPECIALS)})
    return Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,  # type: ignore[arg-type]
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,  # type: ignore[arg-type]
        extra_special_tokens=QWEN_SPECIALS[1:],
    )


def phi_tokenizer() -> Any:
    """A BPE with Phi-3's 32000 regular tokens and its chat specials at their real ids."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    base, merges = _trained_bpe(byte_level=True)
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    vocab.update(padded_vocab({t: i for t, i in base.items() if t not in vocab}, 32000, start=3))
    vocab.update(PHI_SPECIALS)
    raw = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token="<s>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        unk_token="<unk>",
        padding_side="left",
        extra_special_tokens=list(PHI_SPECIALS)[1:],
    )


def florence_tokenizer() -> Any:
    """BART's byte-level BPE (50265 tokens, <mask> last), then Florence-2's task and location tokens and <image>."""
    from transformers import BartTokenizer

    from descry.bench.configs import FLORENCE_BART_VOCAB, FLORENCE_TAGS

    base, merges = _trained_bpe(byte_level=True)
    specials = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    learned = {t: i for t, i in base.items() if t not in specials}
    vocab = {**specials, **padded_vocab(learned, FLORENCE_BART_VOCAB - 1, 4)}
    vocab["<mask>"] = FLORENCE_BART_VOCAB - 1
    tokenizer = BartTokenizer(
        vocab=vocab,
        merges=merges,  # type: ignore[arg-type]
        extra_special_tokens={"image_token": "<image>"},
    )
    locations = [f"<loc_{i}>" for i in range(1000)]
    extra: dict[str, Any] = {"extra_special_tokens": FLORENCE_TAGS + locations}
    tokenizer.add_special_tokens(extra, replace_extra_special_tokens=False)
    return tokenizer


def smolvlm_tokenizer() -> Any:
    """SmolLM2's byte-level BPE (49152 tokens) with SmolVLM's image specials at their real ids (49280 in all)."""
    from transformers import GPT2Tokenizer

    from descry.bench.configs import SMOLVLM_REGULAR

    base, merges = _trained_bpe(byte_level=True)
    heads = {"<|endoftext|>": 0, "<|im_start|>": 1, "<|im_end|>": 2}
    vocab = {**heads, **padded_vocab({t: i for t, i in base.items() if t not in heads}, SMOLVLM_REGULAR, 3)}
    tiles = [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)]
    image = ["<global-img>", *tiles, "<fake_token_around_image>", "<image>"]
    vocab.update({tok: SMOLVLM_REGULAR + i for i, tok in enumerate(image)})
    vocab.update(padded_vocab({}, 49279, start=len(vocab)))
    vocab["<end_of_utterance>"] = 49279
    return GPT2Tokenizer(
        vocab=vocab,
        merges=merges,  # type: ignore[arg-type]
        bos_token="<|im_start|>",
        eos_token="<end_of_utterance>",
        unk_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        add_prefix_space=False,
        extra_special_tokens=[*image, "<|im_end|>"],
    )
