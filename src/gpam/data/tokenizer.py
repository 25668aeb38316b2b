"""Tokenizers for LM and NMT corpora: character, word (with ``<unk>``) and BPE (``tokenizers``).

Every tokenizer shares the special tokens ``<pad>`` = 0, ``<bos>`` = 1, ``<eos>`` = 2,
``<unk>`` = 3, saves itself to one JSON file (:meth:`save`) and is rebuilt by
:func:`load_tokenizer`. ``encode(text) -> list[int]`` never adds bos/eos; ``decode(ids)`` drops
special tokens and returns detokenised text.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from gpam._io import atomic_write_json, read_json

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
KINDS = ("char", "word", "bpe")


class Tokenizer:
    """Base class: a vocabulary with the four special tokens first."""

    kind = ""

    pad_id, bos_id, eos_id, unk_id = PAD_ID, BOS_ID, EOS_ID, UNK_ID

    def __init__(self, vocab: list[str]) -> None:
        if list(vocab[:4]) != list(SPECIALS):
            raise ValueError(f"vocab must start with the special tokens {SPECIALS}")
        self.vocab = list(vocab)
        self.index = {t: i for i, t in enumerate(self.vocab)}
        if len(self.index) != len(self.vocab):
            raise ValueError("vocab holds duplicate tokens")

    @property
    def vocab_size(self) -> int:
        """Number of token ids (specials included)."""
        return len(self.vocab)

    def __len__(self) -> int:
        return self.vocab_size

    def encode(self, text: str) -> list[int]:  # pragma: no cover - abstract
        raise NotImplementedError

    def decode(self, ids: Iterable[int]) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def _tokens(self, ids: Iterable[int]) -> list[str]:
        out = []
        for i in ids:
            i = int(i)
            if i in (PAD_ID, BOS_ID):
                continue
            if i == EOS_ID:
                break
            out.append(self.vocab[i] if 0 <= i < len(self.vocab) else UNK)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description, rebuilt by :func:`tokenizer_from_dict`."""
        return {"kind": self.kind, "vocab": self.vocab}

    def save(self, path: str | os.PathLike) -> Path:
        """Atomically write the tokenizer to a JSON file."""
        return atomic_write_json(path, self.to_dict(), indent=None)


class CharTokenizer(Tokenizer):
    """One token per Unicode character; unseen characters map to ``<unk>``."""

    kind = "char"

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int | None = None) -> CharTokenizer:
        """Vocabulary of the characters in ``texts`` (the most frequent ``vocab_size`` ones)."""
        counts = Counter()
        for t in texts:
            counts.update(t)
        keep = max(0, vocab_size - len(SPECIALS)) if vocab_size else None
        chars = sorted(c for c, _ in counts.most_common(keep))
        return cls(list(SPECIALS) + chars)

    def encode(self, text: str) -> list[int]:
        get = self.index.get
        return [get(c, UNK_ID) for c in text]

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(t if t != UNK else "?" for t in self._tokens(ids))


class WordTokenizer(Tokenizer):
    """Whitespace-separated words; rare words (below ``min_freq`` or past the cap) -> ``<unk>``."""

    kind = "word"

    @classmethod
    def train(
        cls, texts: Iterable[str], vocab_size: int | None = None, min_freq: int = 1
    ) -> WordTokenizer:
        """Keep words seen at least ``min_freq`` times, at most ``vocab_size`` ids in all."""
        if min_freq < 1:
            raise ValueError(f"min_freq must be >= 1, got {min_freq}")
        counts = Counter()
        for t in texts:
            counts.update(t.split())
        for s in SPECIALS:
            counts.pop(s, None)
        words = [w for w, c in sorted(counts.items(), key=lambda x: (-x[1], x[0])) if c >= min_freq]
        if vocab_size:
            words = words[: max(0, vocab_size - len(SPECIALS))]
        return cls(list(SPECIALS) + words)

    def encode(self, text: str) -> list[int]:
        get = self.index.get
        return [get(w, UNK_ID) for w in text.split()]

    def decode(self, ids: Iterable[int]) -> str:
        return " ".join(self._tokens(ids))


class BPETokenizer(Tokenizer):
    """Byte-pair encoding trained with the ``tokenizers`` library.

    Metaspace pre-tokenisation keeps spaces, and characters unseen in training fall back to
    their UTF-8 bytes (256 extra ids), so ``decode(encode(text)) == NFC(text)``.
    """

    kind = "bpe"

    def __init__(self, hf_json: str) -> None:
        from tokenizers import Tokenizer as HFTokenizer

        self._hf = HFTokenizer.from_str(hf_json)
        vocab = self._hf.get_vocab()
        ordered = [t for t, _ in sorted(vocab.items(), key=lambda x: x[1])]
        super().__init__(ordered)

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 8000, min_freq: int = 2) -> BPETokenizer:
        """Learn merges on ``texts`` (the training split only): ``vocab_size`` ids + 256 bytes."""
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import decoders, models, normalizers, pre_tokenizers, trainers

        if vocab_size < len(SPECIALS) + 1:
            raise ValueError(f"vocab_size must be > {len(SPECIALS)}, got {vocab_size}")
        tok = HFTokenizer(models.BPE(unk_token=UNK, byte_fallback=True))
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace()])
        byte_tokens = [f"<0x{i:02X}>" for i in range(256)]  # unseen characters -> UTF-8 bytes
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size + len(byte_tokens),
            min_frequency=min_freq,
            special_tokens=list(SPECIALS) + byte_tokens,
            show_progress=False,
        )
        tok.train_from_iterator((t for t in texts), trainer=trainer)
        return cls(tok.to_str())

    def encode(self, text: str) -> list[int]:
        return self._hf.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Iterable[int]) -> str:
        toks = self._tokens(ids)
        return self._hf.decode([self.index[t] for t in toks], skip_special_tokens=False)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "hf": self._hf.to_str()}


def train_tokenizer(
    kind: str, texts: Iterable[str], vocab_size: int | None = None, min_freq: int = 1
) -> Tokenizer:
    """Build a tokenizer of ``kind`` ("char", "word" or "bpe") from training texts."""
    texts = list(texts)
    if not texts:
        raise ValueError("cannot build a tokenizer from no training text")
    if kind == "char":
        return CharTokenizer.train(texts, vocab_size)
    if kind == "word":
        return WordTokenizer.train(texts, vocab_size, min_freq)
    if kind == "bpe":
        return BPETokenizer.train(texts, vocab_size or 8000, max(2, min_freq))
    raise ValueError(f"tokenizer must be one of {', '.join(KINDS)}; got {kind!r}")


def tokenizer_from_dict(data: dict[str, Any]) -> Tokenizer:
    """Rebuild a tokenizer from :meth:`Tokenizer.to_dict` output."""
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind == "char":
        return CharTokenizer(data["vocab"])
    if kind == "word":
        return WordTokenizer(data["vocab"])
    if kind == "bpe":
        return BPETokenizer(data["hf"])
    raise ValueError(f"tokenizer file: kind must be one of {', '.join(KINDS)}; got {kind!r}")


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """Load a tokenizer JSON file written by :meth:`Tokenizer.save`."""
    path = Path(path)
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer file not found: {path}")
    return tokenizer_from_dict(read_json(path, "tokenizer file "))
