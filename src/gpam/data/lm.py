"""Language-model corpora: text -> one contiguous token stream -> (input, target) batches.

Training batches are a pure function of ``(seed, step, rank)`` (random windows of the stream),
so the data position after a resume is simply the step count and every DDP rank draws a
different shard. Evaluation walks the stream in non-overlapping windows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

from gpam.data.tokenizer import Tokenizer


def encode_corpus(text_or_lines: str | Sequence[str], tokenizer: Tokenizer) -> Tensor:
    """Token stream (1-D LongTensor) of a corpus.

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
        raise ValueError("corpus is too short: it needs at least 2 tokens")
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
