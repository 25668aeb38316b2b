"""Built-in synthetic tasks: determinism per seed, shapes, answers checked by reference solvers."""

from __future__ import annotations

import pytest
import torch

from gpam.data.synthetic import BOS, PAD, SEP, TASKS, SelectiveCopy, make_task
from gpam.data.tasks_listops import DIGIT0, VOCAB, ListOps, apply_op, evaluate


@pytest.mark.parametrize("name", sorted(TASKS))
def test_same_seed_same_batch_other_seed_differs(name: str) -> None:
    task = make_task(name)
    a, b, c = task.batch(6, seed=3), task.batch(6, seed=3), task.batch(6, seed=4)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.loss_mask, b.loss_mask)
    assert not torch.equal(a.inputs, c.inputs)
    assert a.inputs.shape == a.targets.shape == a.loss_mask.shape == (6, task.seq_len)
    assert a.inputs.dtype == torch.long and a.loss_mask.dtype == torch.bool
    assert int(a.inputs.max()) < task.vocab_size and int(a.targets.max()) < task.vocab_size
    # targets are inputs shifted by one
    assert torch.equal(a.inputs[:, 1:], a.targets[:, :-1])
    assert a.loss_mask.any(dim=1).all()
    assert (a.targets[a.loss_mask] != PAD).all()


def test_recall_answers_match_reference_solver() -> None:
    task = make_task("recall", n_pairs=6, n_queries=3, n_keys=10, n_values=7)
    batch = task.batch(16, seed=0)
    for row, tgt, m in zip(batch.inputs.tolist(), batch.targets, batch.loss_mask):
        pos = m.nonzero().flatten().tolist()
        assert len(pos) == 3
        for p in pos:
            assert int(tgt[p]) == task.answer(row, p)


@pytest.mark.parametrize("name", ["copy", "reverse"])
def test_copy_and_reverse(name: str) -> None:
    task = make_task(name, length=7, n_symbols=5)
    batch = task.batch(8, seed=1)
    for row, tgt, m in zip(batch.inputs, batch.targets, batch.loss_mask):
        assert int(row[0]) == BOS and int(row[8]) == SEP
        x = row[1:8]
        want = x.flip(0) if name == "reverse" else x
        assert torch.equal(tgt[m], want)


def test_selective_copy_outputs_the_data_tokens_in_order() -> None:
    task = make_task("selective-copy", length=20, n_data=5, n_symbols=6)
    batch = task.batch(8, seed=2)
    for row, tgt, m in zip(batch.inputs, batch.targets, batch.loss_mask):
        body = row[1:21]
        data = body[body != SelectiveCopy.NOISE]
        assert torch.equal(tgt[m], data)
        assert int(m.sum()) == 5


def test_grammar_scores_every_position_and_is_seeded_by_grammar_seed() -> None:
    task = make_task("grammar", seq_len=48)
    batch = task.batch(4, seed=0)
    assert bool(batch.loss_mask.all())
    assert (batch.inputs == SEP).any()
    other = make_task("grammar", seq_len=48, grammar_seed=99).batch(4, seed=0)
    assert not torch.equal(batch.inputs, other.inputs)
    assert task.metric == "perplexity" and not task.higher_is_better


def test_listops_evaluator_by_hand() -> None:
    assert evaluate(["[MAX", "3", "[MIN", "7", "2", "]", "9", "]"]) == 9
    assert evaluate(["[MIN", "3", "[MAX", "7", "2", "]", "9", "]"]) == 3
    assert evaluate(["[SM", "5", "7", "9", "]"]) == 1
    assert evaluate(["[MED", "4", "1", "8", "2", "]"]) == 2
    assert evaluate(["7"]) == 7
    assert apply_op("MED", [5, 1, 3]) == 3
    for bad in ("[MAX 3", "3 ]", "[FOO 1 ]", "1 2"):
        with pytest.raises(ValueError):
            evaluate(bad.split(" "))


def test_listops_labels_equal_evaluator_and_lengths_respect_bounds() -> None:
    task = ListOps(max_len=80, min_len=30)
    batch = task.batch(32, seed=5)
    assert batch.inputs.shape[1] == 82
    for row, tgt, m in zip(batch.inputs.tolist(), batch.targets, batch.loss_mask):
        sep = row.index(SEP)
        expr = row[1:sep]
        assert 30 <= len(expr) <= 80
        (p,) = m.nonzero().flatten().tolist()
        assert p == sep
        assert int(tgt[p]) - DIGIT0 == evaluate(expr)
        assert all(VOCAB[t] != "<pad>" for t in expr)


@pytest.mark.parametrize(
    ("name", "kw"),
    [
        ("recall", {"n_pairs": 0}),
        ("recall", {"n_pairs": 4, "n_queries": 5}),
        ("copy", {"length": 0}),
        ("selective-copy", {"length": 4, "n_data": 5}),
        ("listops", {"max_len": 10, "min_len": 20}),
        ("grammar", {"seq_len": 1}),
    ],
)
def test_bad_options_raise_value_error(name: str, kw: dict) -> None:
    with pytest.raises(ValueError):
        make_task(name, **kw)


def test_unknown_task_and_bad_batch_size() -> None:
    with pytest.raises(ValueError, match="task"):
        make_task("nope")
    with pytest.raises(TypeError):
        make_task("copy", bogus=1)
    with pytest.raises(ValueError, match="batch_size"):
        make_task("copy").batch(0, seed=0)
