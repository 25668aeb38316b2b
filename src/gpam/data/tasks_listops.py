"""ListOps-style long-range classification (Nangia & Bowman 2018; LRA, Tay et al. 2021).

Expressions such as ``[MAX 3 [MIN 7 2 ] 9 ]`` over digits 0-9 with the operators MAX, MIN, MED
(lower median: ``sorted(x)[(n - 1) // 2]``) and SM (sum modulo 10). A row is
``BOS expression SEP answer`` (padded); the answer digit is the one scored token, so a decoder-only
LM classifies by predicting the next token after SEP. ``max_len`` bounds the expression's length in
tokens (the long-range knob); ``min_len`` rejects shorter samples.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gpam.data.tasks_base import BOS, N_SPECIAL, SEP, SyntheticTask, _check_int

DIGIT0 = N_SPECIAL
OPS = ("MAX", "MIN", "MED", "SM")
OP0 = DIGIT0 + 10
CLOSE = OP0 + len(OPS)
VOCAB = ["<pad>", "<bos>", "<sep>", *[str(d) for d in range(10)], *[f"[{o}" for o in OPS], "]"]


def apply_op(op: str, args: Sequence[int]) -> int:
    """The value of operator ``op`` on digit arguments ``args``."""
    if not args:
        raise ValueError("args must not be empty")
    if op == "MAX":
        return max(args)
    if op == "MIN":
        return min(args)
    if op == "MED":
        return sorted(args)[(len(args) - 1) // 2]
    if op == "SM":
        return sum(args) % 10
    raise ValueError(f"op must be one of {OPS}, got {op!r}")


def evaluate(tokens: Sequence[str | int]) -> int:
    """Evaluate a ListOps expression given as strings (``"[MAX" "3" "]"``) or token ids."""
    words = [VOCAB[t] if isinstance(t, (int, np.integer)) else t for t in tokens]
    stack: list[tuple[str, list[int]]] = []
    result: int | None = None
    for w in words:
        if w.startswith("["):
            stack.append((w[1:], []))
        elif w == "]":
            if not stack:
                raise ValueError("tokens: unbalanced ']'")
            op, args = stack.pop()
            value = apply_op(op, args)
            if stack:
                stack[-1][1].append(value)
            else:
                result = value
        elif w.isdigit() and len(w) == 1:
            if stack:
                stack[-1][1].append(int(w))
            elif result is None:
                result = int(w)
            else:
                raise ValueError("tokens: more than one top-level value")
        else:
            raise ValueError(f"tokens: unknown token {w!r}")
    if stack or result is None:
        raise ValueError("tokens: incomplete expression")
    return result


class ListOps(SyntheticTask):
    """ListOps rows ``BOS expr SEP answer``; ``seq_len = max_len + 2``; accuracy on the answer."""

    def __init__(
        self,
        max_len: int = 64,
        min_len: int | None = None,
        max_depth: int = 6,
        max_args: int = 5,
        leaf_prob: float = 0.25,
    ):
        _check_int("max_len", max_len, 5)
        _check_int("max_depth", max_depth, 1)
        _check_int("max_args", max_args, 2)
        min_len = max_len // 2 if min_len is None else _check_int("min_len", min_len, 1)
        if min_len > max_len:
            raise ValueError(f"min_len must be <= max_len ({max_len}), got {min_len}")
        if not 0.0 <= leaf_prob < 1.0:
            raise ValueError(f"leaf_prob must be in [0, 1), got {leaf_prob}")
        super().__init__(
            name="listops",
            seq_len=max_len + 2,
            vocab_size=len(VOCAB),
            options=dict(max_len=max_len, min_len=min_len, max_depth=max_depth, max_args=max_args),
        )
        self.max_len, self.min_len = max_len, min_len
        self.max_depth, self.max_args, self.leaf_prob = max_depth, max_args, leaf_prob

    def _tree(self, rng: np.random.Generator, budget: int, depth: int) -> tuple[list[int], int]:
        if budget < 4 or depth >= self.max_depth or (depth > 0 and rng.random() < self.leaf_prob):
            d = int(rng.integers(0, 10))
            return [DIGIT0 + d], d
        n_args = int(rng.integers(2, min(self.max_args, budget - 2) + 1))
        op = int(rng.integers(0, len(OPS)))
        toks, vals = [OP0 + op], []
        left = budget - 2
        for i in range(n_args):
            share = max(1, left // (n_args - i))
            sub, v = self._tree(rng, share, depth + 1)
            toks += sub
            vals.append(v)
            left -= len(sub)
        toks.append(CLOSE)
        return toks, apply_op(OPS[op], vals)

    def expression(self, rng: np.random.Generator) -> tuple[list[int], int]:
        """One expression (token ids, ``min_len <= len <= max_len`` when possible) and its value."""
        best: tuple[list[int], int] | None = None
        for _ in range(50):
            toks, value = self._tree(rng, self.max_len, 0)
            if best is None or len(toks) > len(best[0]):
                best = (toks, value)
            if len(toks) >= self.min_len:
                return toks, value
        assert best is not None
        return best

    def sequence(self, rng: np.random.Generator) -> tuple[list[int], list[int]]:
        toks, value = self.expression(rng)
        row = [BOS, *toks, SEP, DIGIT0 + value]
        return row, [len(row) - 1]
