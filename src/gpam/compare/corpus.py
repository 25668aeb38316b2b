"""Point a comparison at real text: a plain-text file or a Hugging Face dataset as an LM task.

:class:`TextLMTask` has the same interface as the synthetic tasks (``batch(batch_size, seed)``),
so ``gpam compare lm`` runs through the same grid, budget and report. Tokenisation is character
level (default; every character of the training text, unknown ones map to ``<unk>``) or word
level (whitespace split, the ``max_vocab`` most frequent words). Training batches are random
windows of ``seq_len + 1`` tokens; validation uses fixed evenly spaced windows of the validation
text (or the last 10 % of the training text when none is given). Metric: perplexity per token.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gpam.data.synthetic import SyntheticBatch

LEVELS = ("char", "word")


def _split(text: str, level: str) -> list[str]:
    return list(text) if level == "char" else text.split()


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
        max_vocab: int = 10000,
        name: str = "text",
    ):
        if level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
        if seq_len < 2:
            raise ValueError(f"seq_len must be >= 2, got {seq_len}")
        train = _split(train_text, level)
        if valid_text is None:
            cut = int(0.9 * len(train))
            train, valid = train[:cut], train[cut:]
        else:
            valid = _split(valid_text, level)
        if len(train) < seq_len + 2 or len(valid) < seq_len + 2:
            raise ValueError(
                f"the corpus is too short for seq_len={seq_len}: {len(train)} training and "
                f"{len(valid)} validation tokens"
            )
        counts = Counter(train)
        vocab = ["<unk>"] + [w for w, _ in counts.most_common(max_vocab - 1)]
        self.index = {w: i for i, w in enumerate(vocab)}
        self.vocab = vocab
        self.vocab_size = len(vocab)
        self.seq_len = seq_len
        self.name = name
        self.level = level
        self.train_ids = np.array([self.index.get(w, 0) for w in train], dtype=np.int64)
        self.valid_ids = np.array([self.index.get(w, 0) for w in valid], dtype=np.int64)

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


def _read(path: str | os.PathLike, max_chars: int | None) -> str:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such text file: {p}")
    if p.suffix == ".gz":
        import gzip

        with gzip.open(p, "rt", encoding="utf-8") as f:
            text = f.read(max_chars or -1)
    else:
        with p.open(encoding="utf-8") as f:
            text = f.read(max_chars or -1)
    return text


def text_task_from_files(
    train: str | os.PathLike,
    valid: str | os.PathLike | None = None,
    *,
    max_chars: int | None = None,
    **kw: Any,
) -> TextLMTask:
    """A :class:`TextLMTask` from plain-text files (``.gz`` allowed); ``max_chars`` caps reading."""
    tr = _read(train, max_chars)
    va = _read(valid, max_chars) if valid is not None else None
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
    try:
        import datasets
    except ImportError as e:  # pragma: no cover - optional extra
        raise ValueError(
            "dataset: install the 'datasets' extra (pip install gpam[datasets])"
        ) from e
    try:
        ds = datasets.load_dataset(name, config)
    except Exception as e:  # offline / unknown name: one clear line
        raise ValueError(f"dataset: could not load {name!r} ({type(e).__name__}: {e})") from e

    def join(split: str) -> str:
        if split not in ds:
            raise ValueError(f"dataset {name!r} has no split {split!r}; it has {list(ds)}")
        col = ds[split][text_field]
        text, size = [], 0
        for line in col:
            text.append(line)
            size += len(line) + 1
            if max_chars and size >= max_chars:
                break
        return "\n".join(text)

    return TextLMTask(join(train_split), join(valid_split), name=name, **kw)
