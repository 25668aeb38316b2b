"""Point a comparison at real text: a plain-text file or a Hugging Face dataset as an LM task.

:class:`TextLMTask` has the same interface as the synthetic tasks (``batch(batch_size, seed)``),
so ``gpam compare lm`` runs through the same grid, budget and report. Reading and tokenisation
reuse ``gpam.data`` (``read_text``, ``train_tokenizer``: char, word or BPE; ``load_hf_lines``).
Training batches are random windows of ``seq_len + 1`` tokens; validation uses fixed evenly spaced
windows of the validation text (or of the last 10 % of the training text when none is given).
Metric: perplexity per token.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gpam.data.synthetic import SyntheticBatch

LEVELS = ("char", "word", "bpe")


class TextLMTask:
    """Language modelling on a token stream (see the module docstring)."""

    metric = "perplexity"
    higher_is_better = False

    def __init__(
        self,
        train_text: str,
        valid_text: str | None = None,
        *,
        seq_len: int = 128,
        level: str = "char",
        max_vocab: int | None = None,
        name: str = "text",
    ):
        from gpam.data.tokenizer import train_tokenizer

        if level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
        if seq_len < 2:
            raise ValueError(f"seq_len must be >= 2, got {seq_len}")
        if valid_text is None:
            cut = int(0.9 * len(train_text))
            train_text, valid_text = train_text[:cut], train_text[cut:]
        self.tokenizer = train_tokenizer(level, train_text.splitlines() or [train_text], max_vocab)
        train = self.tokenizer.encode(train_text)
        valid = self.tokenizer.encode(valid_text)
        if len(train) < seq_len + 2 or len(valid) < seq_len + 2:
            raise ValueError(
                f"the corpus is too short for seq_len={seq_len}: {len(train)} training and "
                f"{len(valid)} validation tokens"
            )
        self.vocab_size = self.tokenizer.vocab_size
        self.seq_len = seq_len
        self.name = name
        self.level = level
        self.train_ids = np.asarray(train, dtype=np.int64)
        self.valid_ids = np.asarray(valid, dtype=np.int64)

    def _rows(self, ids: np.ndarray, starts: np.ndarray) -> SyntheticBatch:
        rows = torch.from_numpy(np.stack([ids[s : s + self.seq_len + 1] for s in starts]))
        return SyntheticBatch(
            rows[:, :-1].clone(),
            rows[:, 1:].clone(),
            torch.ones(len(starts), self.seq_len, dtype=torch.bool),
        )

    def batch(self, batch_size: int, seed: int) -> SyntheticBatch:
        """``batch_size`` random training windows, deterministic for ``seed``."""
        rng = np.random.default_rng(seed)
        starts = rng.integers(0, len(self.train_ids) - self.seq_len - 1, size=batch_size)
        return self._rows(self.train_ids, starts)

    def validation_batches(self, n_batches: int, batch_size: int) -> list[SyntheticBatch]:
        """``n_batches`` fixed batches of evenly spaced validation windows."""
        total = n_batches * batch_size
        starts = np.linspace(0, len(self.valid_ids) - self.seq_len - 1, num=total).astype(np.int64)
        return [
            self._rows(self.valid_ids, starts[i * batch_size : (i + 1) * batch_size])
            for i in range(n_batches)
        ]

    def describe(self) -> dict[str, Any]:
        """JSON-safe description."""
        return {
            "task": self.name,
            "level": self.level,
            "seq_len": self.seq_len,
            "vocab_size": self.vocab_size,
            "metric": self.metric,
            "train_tokens": int(self.train_ids.size),
            "valid_tokens": int(self.valid_ids.size),
        }


def text_task_from_files(
    train: str | os.PathLike,
    valid: str | os.PathLike | None = None,
    *,
    max_chars: int | None = None,
    **kw: Any,
) -> TextLMTask:
    """A :class:`TextLMTask` from plain-text files (``.gz`` allowed); ``max_chars`` caps each."""
    from gpam.data.text import read_text

    tr = read_text(train)[0][:max_chars]
    va = read_text(valid)[0][:max_chars] if valid is not None else None
    return TextLMTask(tr, va, name=Path(train).name, **kw)


def text_task_from_hf(
    name: str,
    config: str | None = None,
    *,
    text_field: str = "text",
    train_split: str = "train",
    valid_split: str = "validation",
    max_chars: int | None = 2_000_000,
    **kw: Any,
) -> TextLMTask:
    """A :class:`TextLMTask` from a Hugging Face dataset (needs ``datasets`` and the network or
    a local cache), e.g. ``text_task_from_hf("wikitext", "wikitext-2-raw-v1")``."""
    from gpam.data.hf import load_hf_lines

    def join(split: str) -> str:
        lines = load_hf_lines(name, config=config, split=split, column=text_field)
        return "\n".join(lines)[:max_chars]

    return TextLMTask(join(train_split), join(valid_split), name=name, **kw)
