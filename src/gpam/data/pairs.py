"""Aligned sentence-pair corpora for translation: reading, checking and length-bucketed batches.

:func:`read_pairs` reads two line-aligned files (gzip accepted). A different number of lines is
a ``ValueError`` naming both files and counts; pairs with an empty side are skipped and counted;
non-UTF-8 lines raise unless ``skip_bad`` (then the pair is skipped and counted).
:class:`PairBatcher` groups pairs of similar length into padded batches
(padding masks: True = padding).
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from gpam.data.text import Stats, _open_bytes, bad_utf8_error
from gpam.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, Tokenizer


@dataclass
class PairStats(Stats):
    """What :func:`read_pairs` kept and skipped."""

    src: str
    tgt: str
    pairs: int = 0
    empty_skipped: int = 0
    bad_utf8_skipped: int = 0

    def summary(self) -> str:
        """One line for logs and reports."""
        return (
            f"{self.src} | {self.tgt}: {self.pairs} pairs kept, {self.empty_skipped} with an "
            f"empty side skipped, {self.bad_utf8_skipped} non-UTF-8 skipped"
        )


def _decoded_lines(path: Path, skip_bad: bool) -> list[str | None]:
    pieces = _open_bytes(path).split(b"\n")
    if pieces and pieces[-1] == b"":
        pieces.pop()
    out: list[str | None] = []
    first: tuple[int, UnicodeDecodeError] | None = None
    for n, raw in enumerate(pieces, start=1):
        try:
            out.append(raw.decode("utf-8").rstrip("\r"))
        except UnicodeDecodeError as e:
            first = first or (n, e)
            out.append(None)
    if first is not None and not skip_bad:
        raise bad_utf8_error(path, out.count(None), *first) from None
    return out


def read_pairs(
    src_path: str | os.PathLike, tgt_path: str | os.PathLike, *, skip_bad: bool = False
) -> tuple[list[tuple[str, str]], PairStats]:
    """Aligned ``(source, target)`` sentence pairs of two files, with skip counts."""
    src_path, tgt_path = Path(src_path), Path(tgt_path)
    src, tgt = _decoded_lines(src_path, skip_bad), _decoded_lines(tgt_path, skip_bad)
    if len(src) != len(tgt):
        raise ValueError(
            f"sentence-pair files are not aligned: {src_path} has {len(src)} lines but "
            f"{tgt_path} has {len(tgt)}"
        )
    stats = PairStats(str(src_path), str(tgt_path))
    pairs = []
    for s, t in zip(src, tgt):
        if s is None or t is None:
            stats.bad_utf8_skipped += 1
        elif not s.strip() or not t.strip():
            stats.empty_skipped += 1
        else:
            pairs.append((s.strip(), t.strip()))
    stats.pairs = len(pairs)
    if not pairs:
        raise ValueError(f"no usable sentence pairs in {src_path} and {tgt_path}")
    return pairs, stats


def encode_pairs(
    pairs: list[tuple[str, str]], src_tok: Tokenizer, tgt_tok: Tokenizer, max_len: int
) -> tuple[list[tuple[list[int], list[int]]], int]:
    """Token ids of each pair, sides truncated to ``max_len - 1``; returns (ids, n_truncated)."""
    out, truncated = [], 0
    for s, t in pairs:
        si, ti = src_tok.encode(s), tgt_tok.encode(t)
        if len(si) > max_len - 1 or len(ti) > max_len - 1:
            truncated += 1
        out.append((si[: max_len - 1], ti[: max_len - 1]))
    return out, truncated


def collate(batch: list[tuple[list[int], list[int]]]) -> dict[str, Tensor]:
    """Pad a list of id pairs.

    Returns ``src`` (B, S) with ``<eos>`` appended, ``src_padding_mask`` (B, S),
    ``tgt_in`` (B, T) = ``<bos>`` + target, ``tgt_out`` (B, T) = target + ``<eos>``,
    ``tgt_padding_mask`` (B, T); masks are True at padding.
    """
    B = len(batch)
    S = max(len(s) for s, _ in batch) + 1
    T = max(len(t) for _, t in batch) + 1
    src = torch.full((B, S), PAD_ID, dtype=torch.long)
    tin = torch.full((B, T), PAD_ID, dtype=torch.long)
    tout = torch.full((B, T), PAD_ID, dtype=torch.long)
    for i, (s, t) in enumerate(batch):
        src[i, : len(s) + 1] = torch.tensor(s + [EOS_ID])
        tin[i, : len(t) + 1] = torch.tensor([BOS_ID] + t)
        tout[i, : len(t) + 1] = torch.tensor(t + [EOS_ID])
    return {
        "src": src,
        "src_padding_mask": src == PAD_ID,
        "tgt_in": tin,
        "tgt_out": tout,
        "tgt_padding_mask": tin == PAD_ID,
    }


class PairBatcher:
    """Length-bucketed batches of at most ``max_tokens`` (source + target) tokens each.

    The batch list of epoch ``e`` is a pure function of ``(seed, e)``; DDP rank ``r`` of ``w``
    takes every ``w``-th batch (the list is cut to a multiple of ``w`` so ranks stay in step).
    """

    def __init__(
        self,
        data: list[tuple[list[int], list[int]]],
        max_tokens: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if not data:
            raise ValueError("no sentence pairs to batch")
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        self.data, self.max_tokens, self.seed = data, max_tokens, seed
        self.rank, self.world_size = rank, world_size

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """Index lists of this rank's batches in epoch ``epoch``."""
        rng = random.Random(self.seed * 7919 + epoch)
        order = list(range(len(self.data)))
        rng.shuffle(order)  # random tie-break within equal lengths
        order.sort(key=lambda i: (len(self.data[i][0]), len(self.data[i][1])))
        batches, cur, longest = [], [], 0
        for i in order:
            n = len(self.data[i][0]) + len(self.data[i][1]) + 2
            if cur and max(longest, n) * (len(cur) + 1) > self.max_tokens:
                batches.append(cur)
                cur, longest = [], 0
            cur.append(i)
            longest = max(longest, n)
        if cur:
            batches.append(cur)
        rng.shuffle(batches)
        if self.world_size > 1:
            usable = len(batches) - len(batches) % self.world_size
            if usable == 0:
                raise ValueError("fewer batches than DDP processes: lower --max-tokens")
            batches = batches[self.rank : usable : self.world_size]
        return batches

    def get(self, idx: list[int]) -> dict[str, Tensor]:
        """Collated batch of the given pair indices (see :func:`collate`)."""
        return collate([self.data[i] for i in idx])
