"""``gpam analyze trainability`` settings, its text (a file or the built-in corpus) and the
unigram loss every cell is measured against.

The built-in corpus is generated, not stored: sentences of invented words drawn from a small
seeded word-level Markov chain (``random.Random(0)``), so it runs with no data and is the same on
every machine. Its characters are predictable within a word and its words from the previous
word, so context (attention) helps beyond the unigram and bigram statistics.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from gpam.analysis.phase import PhaseConfig
from gpam.analysis.stacks import VariantSpec

BUILTIN = "builtin"


def builtin_corpus(n_chars: int = 60_000, seed: int = 0) -> str:
    """A deterministic text of about ``n_chars`` characters (see the module doc)."""
    rng = random.Random(seed)
    onsets, vowels, codas = "bdfgklmnprstvz", "aeiou", ["", "n", "r", "s", "l", "th"]
    words = sorted(
        {
            "".join(
                rng.choice(onsets) + rng.choice(vowels) + rng.choice(codas)
                for _ in range(rng.randint(1, 3))
            )
            for _ in range(60)
        }
    )
    # each word is followed by one of four words of its own (a sparse bigram chain)
    follow = {w: rng.sample(words, 4) for w in words}
    parts: list[str] = []
    size = 0
    while size < n_chars:
        w = rng.choice(words)
        sentence = [w]
        for _ in range(rng.randint(3, 9)):
            w = rng.choice(follow[w])
            sentence.append(w)
        line = " ".join(sentence).capitalize() + ".\n"
        parts.append(line)
        size += len(line)
    return "".join(parts)


def default_variants() -> list[str]:
    """softmax, dagpam, centered, cog (those the installed library has)."""
    from gpam.functional import VARIANTS

    return [v for v in ("softmax", "dagpam", "centered", "cog") if v in VARIANTS]


# `--quick`: the smallest grid that still shows the effect (for `gpam demo`-sized budgets)
QUICK: dict = {
    "variants": ["softmax", "dagpam"],
    "lam_neg": [1.0],
    "neg_query": ["linear"],
    "skip_weights": [0.0, 1.0],
    "qk_gains": [1.0, 4.0],
    "depths": [4],
    "seeds": [0, 1],
    "steps": 60,
    "width": 32,
}


def _increasing(name: str, values: Sequence[float], low: float, strict_low: bool) -> list[float]:
    vals = list(values)
    ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals)
    if not vals or not ok or any(not math.isfinite(v) for v in vals):
        raise ValueError(f"{name} must list finite numbers, got {vals!r}")
    if any(v <= low if strict_low else v < low for v in vals):
        raise ValueError(f"{name} must be {'>' if strict_low else '>='} {low:g}, got {vals!r}")
    if any(b <= a for a, b in zip(vals, vals[1:], strict=False)):
        raise ValueError(f"{name} must be strictly increasing, got {vals!r}")
    return [float(v) for v in vals]


def _distinct_ints(name: str, values: Sequence[int], low: int) -> list[int]:
    vals = list(values)
    bad = [v for v in vals if isinstance(v, bool) or not isinstance(v, int) or v < low]
    if not vals or bad:
        raise ValueError(f"{name} must list integers >= {low}, got {vals!r}")
    if len(set(vals)) != len(vals):
        raise ValueError(f"{name} must not repeat, got {vals!r}")
    return vals


@dataclass
class TrainabilityConfig:
    """Axes (variants x daGPAM settings x depth x qk gain x skip weight x seed) and the
    training of every cell (AdamW through :func:`gpam.train.train_loop`)."""

    variants: Sequence[str] = field(default_factory=default_variants)
    lam_neg: Sequence[float] = field(default_factory=lambda: [1.0])
    neg_query: Sequence[str] = field(default_factory=lambda: ["linear"])
    neg_init: Sequence[str | None] = field(default_factory=lambda: [None])
    skip_weights: Sequence[float] = field(default_factory=lambda: [0.0, 0.25, 1.0])
    qk_gains: Sequence[float] = field(default_factory=lambda: [1.0, 4.0])
    depths: Sequence[int] = field(default_factory=lambda: [8])
    seeds: Sequence[int] = field(default_factory=lambda: [0, 1])
    steps: int = 80
    batch: int = 16
    length: int = 64
    width: int = 32
    heads: int = 4
    lr: float = 3e-3
    warmup: int = 10
    clip: float = 1.0
    text: str | None = None
    holdout_fraction: float = 0.1
    eval_tokens: int = 4096
    probe_batch: int = 4
    margin: float = 0.05

    def specs(self) -> list[VariantSpec]:
        """The settings in ``analyze phase``'s order (daGPAM per lam_neg x query x init)."""
        return PhaseConfig(
            variants=self.variants,
            lam_neg=self.lam_neg,
            neg_query=self.neg_query,
            neg_init=self.neg_init,
        ).specs()

    def validate(self) -> None:
        """Raise ValueError naming the first bad field."""
        for name in ("steps", "batch", "length", "width", "heads", "eval_tokens", "probe_batch"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if self.length < 2:
            raise ValueError(f"length must be >= 2 (the Jacobian needs 2 keys), got {self.length}")
        if self.width % self.heads:
            raise ValueError(f"width ({self.width}) must be divisible by heads ({self.heads})")
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 0:
            raise ValueError(f"warmup must be an integer >= 0, got {self.warmup!r}")
        for name in ("lr", "clip"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
        if not (isinstance(self.margin, (int, float)) and self.margin >= 0):
            raise ValueError(f"margin must be a number >= 0, got {self.margin!r}")
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ValueError(f"holdout_fraction must be in (0, 1), got {self.holdout_fraction!r}")
        self.skip_weights = _increasing("skip_weights", self.skip_weights, 0.0, False)
        self.qk_gains = _increasing("qk_gains", self.qk_gains, 0.0, True)
        self.depths = _distinct_ints("depths", self.depths, 1)
        self.seeds = _distinct_ints("seeds", self.seeds, 0)
        self.specs()


@dataclass
class Corpus:
    """Token streams of the training and held-out splits, (N,) LongTensors, and what they are."""

    train_ids: Tensor
    val_ids: Tensor
    vocab_size: int
    chars: list[str]
    name: str
    sha256: str


def load_corpus(cfg: TrainabilityConfig) -> Corpus:
    """Read ``cfg.text`` (or the built-in corpus), split off the last ``holdout_fraction`` as
    held-out text, and encode both with a character vocabulary of the whole text."""
    from gpam.data.lm import encode_corpus
    from gpam.data.text import read_text, split_text
    from gpam.data.tokenizer import CharTokenizer

    if cfg.text in (None, BUILTIN):
        text, name = builtin_corpus(), BUILTIN
    else:
        text, _ = read_text(cfg.text)
        name = str(cfg.text)
    train, held = split_text(text, 1.0 - cfg.holdout_fraction)
    need = cfg.length + 1
    if len(train) < need or len(held) < need:
        raise ValueError(
            f"text: {name} is too short; both splits need more than length={cfg.length} "
            f"characters (got {len(train)} and {len(held)})"
        )
    tok = CharTokenizer.train([text])
    return Corpus(
        encode_corpus(train, tok),
        encode_corpus(held, tok),
        tok.vocab_size,
        sorted(set(text)),
        name,
        hashlib.sha256(text.encode("utf-8")).hexdigest(),
    )


def held_out_targets(val_ids: Tensor, length: int, max_tokens: int) -> Tensor:
    """The held-out targets the loss is averaged over (the engine's windows, capped), (M,)."""
    from gpam.data.lm import eval_windows

    return torch.cat([y.reshape(-1) for _, y in eval_windows(val_ids, length, 1, max_tokens)])


def unigram_loss(train_ids: Tensor, targets: Tensor, support: Sequence[int] | None = None) -> float:
    """Cross-entropy (nats/token) of ``targets`` under the add-one (Laplace) smoothed unigram
    distribution of ``train_ids`` over ``support`` (default: the ids seen in either).

    The loss of a model that predicts every token without context from the training counts.
    """
    counts = Counter(train_ids.tolist())
    ids = set(counts) | set(targets.tolist()) if support is None else set(support)
    missing = set(targets.tolist()) - ids
    if missing:
        raise ValueError(f"support must contain every target id; missing {sorted(missing)}")
    total = sum(counts[i] for i in ids) + len(ids)
    logp = {i: math.log((counts[i] + 1) / total) for i in ids}
    return -sum(logp[t] for t in targets.tolist()) / targets.numel()
