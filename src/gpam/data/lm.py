"""The one language-model data pipeline (``gpam train lm``, ``gpam eval lm``, ``gpam compare
lm``): text -> one contiguous token stream -> (input, target) batches.

:func:`prepare_lm_corpus` reads the text (files or a Hugging Face dataset), holds out the
validation part, trains (or reuses) the tokenizer and encodes both splits with
:func:`encode_corpus`: character tokenizers encode the raw text, word and BPE tokenizers encode
line by line with ``<eos>`` after each line. Training batches are a pure function of
``(seed, step, rank)`` (random windows of the stream), so the data position after a resume is
simply the step count and every DDP rank draws a different shard. Evaluation walks the stream in
non-overlapping windows (:func:`eval_windows`), so the same model and text give the same
perplexity whichever command computes it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from gpam.data.text import read_lines, read_text, split_text
from gpam.data.tokenizer import Tokenizer, train_tokenizer


@dataclass
class LMDataOptions:
    """Where the LM text comes from and how it is tokenised (``max_chars`` caps each split)."""

    train: str | None = None
    valid: str | None = None
    holdout_fraction: float = 0.1
    hf_dataset: str | None = None
    hf_config: str | None = None
    hf_column: str = "text"
    hf_data_files: Any = None
    tokenizer: str = "char"
    vocab_size: int | None = None
    min_freq: int = 1
    skip_bad: bool = False
    seq_len: int = 128
    batch_size: int = 32
    max_eval_tokens: int | None = 200_000
    max_chars: int | None = None


@dataclass
class LMCorpus:
    """A tokenised LM corpus: ``train_ids`` / ``val_ids`` (N,) LongTensors, the tokenizer, notes
    on what was read, and a short name."""

    tokenizer: Tokenizer
    train_ids: Tensor
    val_ids: Tensor
    notes: list[str] = field(default_factory=list)
    name: str = "text"
    seq_len: int = 128
    metric: str = "perplexity"

    @property
    def vocab_size(self) -> int:
        """The tokenizer's vocabulary size."""
        return self.tokenizer.vocab_size

    def describe(self) -> dict[str, Any]:
        """JSON-safe description; ``data_sha256`` changes whenever the token streams do."""
        h = hashlib.sha256()
        for ids in (self.train_ids, self.val_ids):
            h.update(ids.numpy().tobytes())
        return {
            "task": self.name,
            "level": self.tokenizer.kind,
            "seq_len": self.seq_len,
            "vocab_size": self.vocab_size,
            "metric": self.metric,
            "train_tokens": int(self.train_ids.numel()),
            "valid_tokens": int(self.val_ids.numel()),
            "data_sha256": h.hexdigest()[:16],
        }


def _cap(corpus: Any, max_chars: int | None) -> Any:
    if max_chars is None:
        return corpus
    if isinstance(corpus, str):
        return corpus[:max_chars]
    out, n = [], 0
    for line in corpus:
        n += len(line) + 1
        if n > max_chars:
            break
        out.append(line)
    return out


def holdout(corpus: Any, fraction: float) -> tuple[Any, Any]:
    """(train, validation): the last ``fraction`` of a text (characters) or of a list of lines."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in (0, 1), got {fraction}")
    if isinstance(corpus, str):
        return split_text(corpus, 1.0 - fraction)
    cut = int(len(corpus) * (1.0 - fraction))
    if cut < 1 or cut >= len(corpus):
        raise ValueError(f"training text has too few lines ({len(corpus)}) to hold out {fraction}")
    return corpus[:cut], corpus[cut:]


def _hf_lines(d: LMDataOptions, split: str) -> list[str]:
    from gpam.data.hf import load_hf_lines

    lines = load_hf_lines(
        d.hf_dataset,
        config=d.hf_config,
        split=split,
        column=d.hf_column,
        data_files=d.hf_data_files,
    )
    return [ln for ln in lines if ln.strip()]


def _read(path: str, char: bool, skip_bad: bool) -> tuple[Any, str]:
    if char:
        text, s = read_text(path, skip_bad=skip_bad)
    else:
        text, s = read_lines(path, skip_bad=skip_bad)
    if not (text.strip() if isinstance(text, str) else text):
        raise ValueError(f"data file {path} holds no text ({s.summary()})")
    return text, s.summary()


def load_lm_texts(d: LMDataOptions) -> tuple[Any, Any, list[str]]:
    """(train corpus, validation corpus, notes on what was read); str for char, lines otherwise."""
    notes: list[str] = []
    char = d.tokenizer == "char"
    if d.hf_dataset:
        tr = _hf_lines(d, "train")
        if d.valid:
            va, note = _read(d.valid, False, d.skip_bad)
            notes.append(note)
        else:
            try:
                va = _hf_lines(d, "validation")
            except ValueError:  # no validation split: hold out the end of train instead
                va = []
        if char:
            tr, va = "\n".join(tr), "\n".join(va)
        tr, va = _cap(tr, d.max_chars), _cap(va, d.max_chars)
        if not va:
            tr, va = holdout(tr, d.holdout_fraction)
            notes.append(f"validation = last {d.holdout_fraction:g} of the training split")
        return tr, va, notes
    if not d.train:
        raise ValueError("give a training text file (--train FILE) or --hf-dataset NAME")
    tr, note = _read(d.train, char, d.skip_bad)
    notes.append(note)
    tr = _cap(tr, d.max_chars)
    if d.valid:
        va, note = _read(d.valid, char, d.skip_bad)
        notes.append(note)
        va = _cap(va, d.max_chars)
    else:
        tr, va = holdout(tr, d.holdout_fraction)
        notes.append(f"validation = last {d.holdout_fraction:g} of the training text")
    return tr, va, notes


def prepare_lm_corpus(
    d: LMDataOptions, tokenizer: Tokenizer | None = None, name: str | None = None
) -> LMCorpus:
    """Read, split, tokenise (training a ``d.tokenizer`` tokenizer on the training split unless
    ``tokenizer`` is given) and encode an LM corpus."""
    tr, va, notes = load_lm_texts(d)
    if tokenizer is None:
        texts = [tr] if isinstance(tr, str) else tr
        tokenizer = train_tokenizer(d.tokenizer, texts, d.vocab_size, d.min_freq)
    label = name or d.hf_dataset or (Path(d.train).name if d.train else "text")
    train_source = f"training text {d.train or d.hf_dataset}"
    val_source = f"validation text {d.valid}" if d.valid else f"held-out end of the {train_source}"
    return LMCorpus(
        tokenizer,
        encode_corpus(tr, tokenizer, train_source),
        encode_corpus(va, tokenizer, val_source),
        notes,
        label,
        d.seq_len,
    )


def encode_corpus(
    text_or_lines: str | Sequence[str], tokenizer: Tokenizer, source: str = "corpus"
) -> Tensor:
    """Token stream (1-D LongTensor) of a corpus (``source`` names it in errors).

    Character tokenizers encode the raw text (newlines are tokens); word and BPE tokenizers
    encode line by line and append ``<eos>`` after each line (the PTB convention).
    """
    if tokenizer.kind == "char":
        text = text_or_lines if isinstance(text_or_lines, str) else "\n".join(text_or_lines)
        ids = tokenizer.encode(text)
    else:
        lines = text_or_lines.split("\n") if isinstance(text_or_lines, str) else text_or_lines
        ids = []
        for line in lines:
            if line.strip():
                ids.extend(tokenizer.encode(line))
                ids.append(tokenizer.eos_id)
    if len(ids) < 2:
        raise ValueError(f"{source} is too short: {len(ids)} token(s), it needs at least 2")
    return torch.tensor(ids, dtype=torch.long)


class LMStream:
    """Batches of ``batch_size`` windows of ``seq_len + 1`` tokens from a token stream.

    ``stream``: (N,) LongTensor. ``batch(step)`` returns ``(x, y)``, each (B, T), y = x shifted
    by one token.
    """

    def __init__(self, stream: Tensor, seq_len: int, batch_size: int, seed: int = 0) -> None:
        if stream.dim() != 1:
            raise ValueError(f"stream must be 1-D, got shape {tuple(stream.shape)}")
        if seq_len < 1 or batch_size < 1:
            raise ValueError(f"seq_len and batch_size must be >= 1, got {seq_len}, {batch_size}")
        if stream.numel() < seq_len + 1:
            raise ValueError(
                f"training text has {stream.numel()} tokens, fewer than seq_len+1={seq_len + 1}; "
                "use a shorter --seq-len or more text"
            )
        self.stream, self.seq_len, self.batch_size, self.seed = stream, seq_len, batch_size, seed

    def batch(self, step: int, rank: int = 0, world_size: int = 1) -> tuple[Tensor, Tensor]:
        """The batch of training step ``step`` for DDP rank ``rank`` (deterministic)."""
        g = torch.Generator().manual_seed(
            (self.seed * 1_000_003 + step) * max(1, world_size) + rank + 17
        )
        hi = self.stream.numel() - self.seq_len - 1
        starts = torch.randint(0, hi + 1, (self.batch_size,), generator=g)
        idx = starts[:, None] + torch.arange(self.seq_len + 1)[None, :]
        w = self.stream[idx]
        return w[:, :-1], w[:, 1:]


def eval_windows(
    stream: Tensor, seq_len: int, batch_size: int, max_tokens: int | None = None
) -> Iterator[tuple[Tensor, Tensor]]:
    """Non-overlapping ``(x, y)`` windows covering the stream (each target token once).

    The last window may be shorter. ``max_tokens`` caps the number of predicted tokens.
    """
    n = stream.numel() - 1
    if max_tokens is not None:
        n = min(n, max_tokens)
    if n < 1:
        raise ValueError("evaluation text is too short: it needs at least 2 tokens")
    starts = list(range(0, n, seq_len))
    for i in range(0, len(starts), batch_size):
        chunk = starts[i : i + batch_size]
        lens = [min(seq_len, n - s) for s in chunk]
        L = max(lens)
        if len(set(lens)) > 1:  # ragged last window: yield full ones first, then the short one
            full = [s for s, ln in zip(chunk, lens) if ln == L]
            yield _stack(stream, full, L)
            for s, ln in zip(chunk, lens):
                if ln != L:
                    yield _stack(stream, [s], ln)
        else:
            yield _stack(stream, chunk, L)


def _stack(stream: Tensor, starts: list[int], length: int) -> tuple[Tensor, Tensor]:
    idx = torch.tensor(starts)[:, None] + torch.arange(length + 1)[None, :]
    w = stream[idx]
    return w[:, :-1], w[:, 1:]
