"""A test split that never chooses anything: the final numbers of a tuned comparison.

:class:`TestSplitKind` wraps a comparison kind: every run still trains and validates on the
kind's own splits (the learning curves, the equal-steps/equal-time views and the learning-rate
choice read validation), but its ``final_metric`` is measured on a held-out test split; the
final validation metric is kept as ``val_final_metric``.

Test splits: synthetic tasks, a separately seeded set (batch seeds ``TEST_SEED + i``, far from
training batches ``seed * 1_000_000 + i`` and validation ``1_000_003 + i``); language modelling,
``--test FILE`` or a split of ``--train`` (:func:`lm_splits`).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

TEST_SEED = 10**12  # synthetic test batches use seeds TEST_SEED + i


class TestSplitKind:
    """``kind`` with its final metric measured by ``test_metric(model, device)``.

    ``test_info`` (JSON-safe: what the test split is) joins ``describe()``, so a run's hash
    changes with its test split."""

    __test__ = False  # not a pytest class

    def __init__(
        self,
        kind: Any,
        test_metric: Callable[[nn.Module, torch.device], float],
        test_info: dict[str, Any],
    ) -> None:
        self.inner, self._test, self.test_info = kind, test_metric, dict(test_info)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def describe(self) -> dict[str, Any]:
        return {**self.inner.describe(), "test": self.test_info}

    def final_metric(self, model: nn.Module, result: dict[str, Any], device: torch.device) -> float:
        return float(self._test(model, device))

    def val_final_metric(
        self, model: nn.Module, result: dict[str, Any], device: torch.device
    ) -> float:
        """The final metric on the validation split (what the learning-rate choice reads)."""
        return float(self.inner.final_metric(model, result, device))


def synthetic_test_kind(kind: Any, n_batches: int, batch_size: int) -> TestSplitKind:
    """A synthetic task's kind scored on ``n_batches`` test batches of ``batch_size`` rows
    drawn with their own seeds (``TEST_SEED + i``)."""
    from gpam.train.synthetic import evaluate_batches

    task = kind.task
    batches = [task.batch(batch_size, seed=TEST_SEED + i) for i in range(n_batches)]

    def metric(model: nn.Module, device: torch.device) -> float:
        res = evaluate_batches(model, task.metric, [b.to(device) for b in batches])
        return float(res[task.metric])

    info = {"split": "seeded", "seed": TEST_SEED, "batches": n_batches, "batch_size": batch_size}
    return TestSplitKind(kind, metric, info)


def lm_test_kind(
    kind: Any,
    test_ids: torch.Tensor,
    batch_size: int,
    max_eval_tokens: int | None,
    source: str = "text",
) -> TestSplitKind:
    """A language-modelling kind scored by perplexity on the token stream ``test_ids`` (at most
    ``max_eval_tokens`` tokens, in batches of ``batch_size`` windows, as validation)."""
    from gpam.train.lm import lm_loss
    from gpam.train.nll import nats_to_ppl

    corpus = kind.task

    def metric(model: nn.Module, device: torch.device) -> float:
        loss = lm_loss(model, test_ids, corpus.seq_len, batch_size, device, max_eval_tokens)
        return float(nats_to_ppl(loss))

    info = {
        "split": "text",
        "test_tokens": int(test_ids.numel()),
        "test_sha256": hashlib.sha256(test_ids.numpy().tobytes()).hexdigest()[:16],
        "max_eval_tokens": max_eval_tokens,
        "source": source,
    }
    return TestSplitKind(kind, metric, info)


def lm_splits(d: Any, test: str | None) -> tuple[Any, Any, Any, list[str]]:
    """(train, validation, test, notes) texts of ``gpam compare lm`` with a test split
    (``d``: a :class:`gpam.data.lm.LMDataOptions`, ``f = d.holdout_fraction``).

    With ``test`` the test text is that file; else it is the last ``f`` of the training text.
    Validation is ``d.valid`` when given, else the last ``f`` of the training text before
    the test part. So ``--train`` alone is split in order into train ``1 - 2f``, validation
    ``f``, test ``f`` (0.8 / 0.1 / 0.1 by default), three disjoint ranges."""
    from gpam.data.lm import holdout, load_lm_texts

    f = d.holdout_fraction
    if test:
        _, te, n_te = load_lm_texts(dataclasses.replace(d, valid=test))
        tr, va, notes = load_lm_texts(d)
        return tr, va, te, [*notes, *n_te[1:], f"test = {test}"]
    if d.valid:
        tr_all, va, notes = load_lm_texts(d)
        tr, te = holdout(tr_all, f)
        return tr, va, te, [*notes, f"test = last {f:g} of the training text"]
    if not 0.0 < f < 0.5:
        raise ValueError(f"holdout_fraction must be in (0, 0.5) for a three-way split, got {f}")
    tr_va, te, notes = load_lm_texts(d)  # test = the last f
    tr, va = holdout(tr_va, f / (1.0 - f))  # validation = the f before it
    notes = [n for n in notes if not n.startswith("validation =")]
    return (
        tr,
        va,
        te,
        [
            *notes,
            f"three-way split of the training text in order: train {1 - 2 * f:g}, "
            f"validation {f:g}, test {f:g}",
        ],
    )


def prepare_lm_test_corpus(d: Any, test: str | None) -> tuple[Any, torch.Tensor]:
    """(:class:`gpam.data.lm.LMCorpus` of train and validation, test token stream): the
    tokenizer is trained on the training split only (:func:`lm_splits` for the splits; the
    corpus's last note says where the test split comes from)."""
    from pathlib import Path

    from gpam.data.lm import LMCorpus, encode_corpus
    from gpam.data.tokenizer import train_tokenizer

    tr, va, te, notes = lm_splits(d, test)
    tok = train_tokenizer(
        d.tokenizer, [tr] if isinstance(tr, str) else tr, d.vocab_size, d.min_freq
    )
    name = d.hf_dataset or (Path(d.train).name if d.train else "text")
    corpus = LMCorpus(
        tok,
        encode_corpus(tr, tok, "training split"),
        encode_corpus(va, tok, "validation split"),
        notes,
        name,
        d.seq_len,
    )
    return corpus, encode_corpus(te, tok, "test split")
