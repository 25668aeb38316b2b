"""Built-in synthetic tasks for decoder-only language models (seeded, no download).

Every task yields :class:`SyntheticBatch` objects ``(inputs, targets, loss_mask)`` of shape
``(B, T)`` for next-token training: ``targets[:, t]`` is the token that follows ``inputs[:, t]``
and ``loss_mask`` marks the positions that are scored (the answers; classification tasks put the
label as the next token after the last input token). The same ``seed`` always gives the same batch.

Tasks (``make_task(name, **options)``; ``TASKS`` lists the names):

* ``recall``: multi-query associative recall (key-value pairs, then queries; Arora et al. 2023).
* ``copy`` / ``reverse``: reproduce (or reverse) a random sequence after a separator.
* ``selective-copy``: reproduce the data tokens scattered among noise tokens (Gu & Dao 2023).
* ``grammar``: a seeded random probabilistic context-free grammar (language modelling, every
  position scored; the metric is perplexity).
* ``listops``: ListOps-style nested MAX/MIN/MED/SM expressions over digits, with a configurable
  maximum length (long-range classification, Nangia & Bowman 2018); see ``gpam.data.tasks_listops``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gpam.data.tasks_base import (
    BOS,
    N_SPECIAL,
    PAD,
    SEP,
    SyntheticBatch,
    SyntheticTask,
    _check_int,
)
from gpam.data.tasks_listops import ListOps

__all__ = [
    "BOS",
    "N_SPECIAL",
    "PAD",
    "SEP",
    "TASKS",
    "AssociativeRecall",
    "CopyTask",
    "GrammarLM",
    "ListOps",
    "SelectiveCopy",
    "SyntheticBatch",
    "SyntheticTask",
    "make_task",
]


class AssociativeRecall(SyntheticTask):
    """Multi-query associative recall: ``k1 v1 ... kn vn`` then ``q1 ans1 q2 ans2 ...``.

    ``n_pairs`` distinct keys from ``n_keys`` key tokens, values from ``n_values`` tokens; the
    ``n_queries`` queried keys are drawn (without repeats) from the pairs; each answer is scored.
    """

    def __init__(self, n_pairs: int = 8, n_queries: int = 4, n_keys: int = 32, n_values: int = 32):
        _check_int("n_pairs", n_pairs, 1)
        _check_int("n_queries", n_queries, 1)
        if n_keys < n_pairs:
            raise ValueError(f"n_keys must be >= n_pairs ({n_pairs}), got {n_keys}")
        _check_int("n_values", n_values, 2)
        if n_queries > n_pairs:
            raise ValueError(f"n_queries must be <= n_pairs ({n_pairs}), got {n_queries}")
        super().__init__(
            name="recall",
            seq_len=1 + 2 * n_pairs + 1 + 2 * n_queries - 1,
            vocab_size=N_SPECIAL + n_keys + n_values,
            options=dict(n_pairs=n_pairs, n_queries=n_queries, n_keys=n_keys, n_values=n_values),
        )
        self.n_pairs, self.n_queries = n_pairs, n_queries
        self.n_keys, self.n_values = n_keys, n_values

    def sequence(self, rng: np.random.Generator) -> tuple[list[int], list[int]]:
        keys = rng.choice(self.n_keys, size=self.n_pairs, replace=False) + N_SPECIAL
        vals = rng.integers(0, self.n_values, size=self.n_pairs) + N_SPECIAL + self.n_keys
        toks = [BOS]
        for k, v in zip(keys, vals):
            toks += [int(k), int(v)]
        toks.append(SEP)
        scored = []
        for q in rng.choice(self.n_pairs, size=self.n_queries, replace=False):
            toks.append(int(keys[q]))
            scored.append(len(toks))
            toks.append(int(vals[q]))
        return toks, scored

    def answer(self, inputs: list[int], query_pos: int) -> int:
        """The correct value for the key at ``inputs[query_pos]`` (a reference solver for tests)."""
        sep = inputs.index(SEP)
        pairs = {inputs[i]: inputs[i + 1] for i in range(1, sep, 2)}
        return pairs[inputs[query_pos]]


class CopyTask(SyntheticTask):
    """``BOS x1..xn SEP y1..yn`` with ``y = x`` (``reverse=False``) or ``reversed(x)``."""

    def __init__(self, length: int = 16, n_symbols: int = 16, reverse: bool = False):
        _check_int("length", length, 1)
        _check_int("n_symbols", n_symbols, 2)
        super().__init__(
            name="reverse" if reverse else "copy",
            seq_len=2 * length + 1,
            vocab_size=N_SPECIAL + n_symbols,
            options=dict(length=length, n_symbols=n_symbols),
        )
        self.length, self.n_symbols, self.reverse = length, n_symbols, reverse

    def sequence(self, rng: np.random.Generator) -> tuple[list[int], list[int]]:
        x = [int(t) + N_SPECIAL for t in rng.integers(0, self.n_symbols, size=self.length)]
        y = x[::-1] if self.reverse else x
        toks = [BOS, *x, SEP, *y]
        start = self.length + 2
        return toks, list(range(start, start + self.length))


class SelectiveCopy(SyntheticTask):
    """``n_data`` data tokens at random places among ``length`` noise tokens, then SEP and the
    data tokens in order (Gu & Dao 2023): the model must skip the noise."""

    NOISE = N_SPECIAL

    def __init__(self, length: int = 32, n_data: int = 8, n_symbols: int = 16):
        _check_int("length", length, 2)
        _check_int("n_data", n_data, 1)
        _check_int("n_symbols", n_symbols, 2)
        if n_data > length:
            raise ValueError(f"n_data must be <= length ({length}), got {n_data}")
        super().__init__(
            name="selective-copy",
            seq_len=length + 1 + n_data,
            vocab_size=N_SPECIAL + 1 + n_symbols,
            options=dict(length=length, n_data=n_data, n_symbols=n_symbols),
        )
        self.length, self.n_data, self.n_symbols = length, n_data, n_symbols

    def sequence(self, rng: np.random.Generator) -> tuple[list[int], list[int]]:
        data = [int(t) + N_SPECIAL + 1 for t in rng.integers(0, self.n_symbols, size=self.n_data)]
        where = np.sort(rng.choice(self.length, size=self.n_data, replace=False))
        body = [self.NOISE] * self.length
        for p, d in zip(where, data):
            body[p] = d
        toks = [BOS, *body, SEP, *data]
        start = self.length + 2
        return toks, list(range(start, start + self.n_data))


class GrammarLM(SyntheticTask):
    """Language modelling on a seeded random probabilistic context-free grammar.

    ``n_nonterminals`` symbols, each with ``rules_per`` productions of 1-3 symbols (terminals or
    later nonterminals, so derivations terminate); sentences end with SEP and are concatenated to
    fill ``seq_len + 1`` tokens. Every position is scored; the metric is perplexity.
    """

    def __init__(
        self,
        seq_len: int = 64,
        n_terminals: int = 24,
        n_nonterminals: int = 8,
        rules_per: int = 3,
        grammar_seed: int = 1234,
    ):
        _check_int("seq_len", seq_len, 2)
        _check_int("n_terminals", n_terminals, 2)
        _check_int("n_nonterminals", n_nonterminals, 1)
        _check_int("rules_per", rules_per, 1)
        super().__init__(
            name="grammar",
            seq_len=seq_len,
            vocab_size=N_SPECIAL + n_terminals,
            metric="perplexity",
            options=dict(
                n_terminals=n_terminals,
                n_nonterminals=n_nonterminals,
                rules_per=rules_per,
                grammar_seed=grammar_seed,
            ),
        )
        g = np.random.default_rng(grammar_seed)
        # symbol encoding: >= 0 terminal token id, < 0 nonterminal -(i+1)
        self.rules: list[list[list[int]]] = []
        self.probs: list[np.ndarray] = []
        for i in range(n_nonterminals):
            prods = []
            for _ in range(rules_per):
                body = []
                for _ in range(int(g.integers(1, 4))):
                    later = n_nonterminals - i - 1
                    if later > 0 and g.random() < 0.5:
                        body.append(-(i + 2 + int(g.integers(0, later))))
                    else:
                        body.append(N_SPECIAL + int(g.integers(0, n_terminals)))
                prods.append(body)
            self.rules.append(prods)
            self.probs.append(g.dirichlet(np.ones(rules_per)))

    def sentence(self, rng: np.random.Generator) -> list[int]:
        """One sentence (terminal tokens) derived from the start symbol."""
        out: list[int] = []
        stack = [-1]
        while stack:
            s = stack.pop()
            if s >= 0:
                out.append(s)
                continue
            i = -s - 1
            body = self.rules[i][int(rng.choice(len(self.rules[i]), p=self.probs[i]))]
            stack.extend(reversed(body))
        return out

    def sequence(self, rng: np.random.Generator) -> tuple[list[int], list[int]]:
        toks = [BOS]
        while len(toks) < self.seq_len + 1:
            toks += [*self.sentence(rng), SEP]
        toks = toks[: self.seq_len + 1]
        return toks, list(range(1, len(toks)))


TASKS: dict[str, Any] = {
    "recall": AssociativeRecall,
    "copy": lambda **kw: CopyTask(reverse=False, **kw),
    "reverse": lambda **kw: CopyTask(reverse=True, **kw),
    "selective-copy": SelectiveCopy,
    "grammar": GrammarLM,
    "listops": ListOps,
}


def make_task(name: str, **options: Any) -> SyntheticTask:
    """Build the built-in task ``name`` (one of ``TASKS``) with its keyword options."""
    if name not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {name!r}")
    try:
        return TASKS[name](**options)
    except TypeError as e:
        raise TypeError(f"bad option for task {name!r}: {e}") from e
