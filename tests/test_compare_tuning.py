"""Issue 18 items 2 and 5: a learning rate per setting chosen on validation only, the test split,
and seeds by power. ``train_one`` is patched to return synthetic measurements (fast, known
answers); everything else is the real runner (run hash, results.json, reuse, report)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import gpam.compare.runner as runner
from gpam.compare.grid import CompareConfig
from gpam.compare.kinds import as_kind
from gpam.compare.power import run_to_power
from gpam.compare.settings import TrainSettings
from gpam.compare.stats import paired_difference
from gpam.compare.test_split import TEST_SEED, lm_splits, synthetic_test_kind
from gpam.compare.tuning import choose_lrs, run_tuned
from gpam.data.lm import LMDataOptions
from gpam.data.synthetic import make_task
from gpam.train.synthetic import VAL_SEED


def _cfg(**kw) -> CompareConfig:
    base = dict(
        task="copy",
        variants=["softmax", "dagpam"],
        seeds=[0, 1, 2],
        d_model=16,
        n_layers=1,
        n_heads=2,
        train=TrainSettings(steps=10, batch_size=4, eval_every=10, eval_batches=1),
    )
    base.update(kw)
    return CompareConfig(**base)


@pytest.fixture
def kind():
    return as_kind(make_task("copy", length=4, n_symbols=4))


def _fake(monkeypatch, val, test, calls):
    """Patch ``train_one``: accuracy ``val(label, lr, seed)`` on validation (also the curve) and
    ``test(label, lr, seed)`` as the final (test) metric."""

    def fake(config, kind, spec, run_dir, h):
        lr = config.train.lr if spec.lr is None else spec.lr
        calls.append((spec.label, lr, spec.seed))
        v, t = val(spec.label, lr, spec.seed), test(spec.label, lr, spec.seed)
        curve = [
            {"step": 10, "elapsed_s": 1.0, "train_loss": 1.0, "val_loss": 1 - v, "val_metric": v}
        ]
        return torch.nn.Linear(2, 2), {
            "final_metric": t,
            "val_final_metric": v,
            "final_loss": 1 - v,
            "steps": 10,
            "stopped": "steps",
            "wall_s": 1.0,
            "train_s": 1.0,
            "budget_clock": "wall",
            "time_per_step_ms": 1.0,
            "peak_memory_mb": 1.0,
            "memory_method": "fake",
            "rank_collapse": 0.5,
            "curve": curve,
        }

    monkeypatch.setattr(runner, "train_one", fake)


def test_choose_lrs_known_answers() -> None:
    curves = {"a": {1e-3: 10.0, 2e-3: 8.0, 4e-3: 9.0}, "b": {1e-3: 7.0, 2e-3: math.nan, 4e-3: 9.0}}
    chosen, edge = choose_lrs(curves, "perplexity")  # lower is better
    assert chosen == {"a": 2e-3, "b": 1e-3} and edge == ["b"]
    chosen, edge = choose_lrs(curves, "accuracy")  # higher is better; NaN never wins
    assert chosen == {"a": 1e-3, "b": 4e-3} and edge == ["a", "b"]


def test_chosen_lr_depends_on_validation_only(tmp_path: Path, kind, monkeypatch) -> None:
    # validation prefers 2e-3 for softmax and 1e-3 (an edge) for dagpam; the test split would
    # choose 4e-3 for both
    best_val = {"softmax": 2e-3, "dagpam": 1e-3}

    def val(label, lr, seed):
        return 0.9 - abs(math.log2(lr / best_val[label])) / 10

    def test(label, lr, seed):
        return 0.5 + lr * 10 + seed / 100

    calls: list = []
    _fake(monkeypatch, val, test, calls)
    res = run_tuned(_cfg(), kind, tmp_path, [1e-3, 2e-3, 4e-3], [0], progress=False)
    tuning = res["tuning"]
    assert tuning["chosen"] == best_val
    assert tuning["edge"] == ["dagpam"]
    assert tuning["curves"]["softmax"]["0.002"] == pytest.approx(0.9)
    # every final run at its setting's rate, scored on the test split
    for r in res["runs"].values():
        assert r["lr"] == best_val[r["label"]]
        assert r["final_metric"] == pytest.approx(test(r["label"], r["lr"], r["seed"]))
    rows = {r["label"]: r for r in res["summary"]["variants"]}
    assert rows["softmax"]["metric_mean"] == pytest.approx(0.5 + 0.02 + 0.01)
    # 2 settings x 3 rates on seed 0, then seeds 1 and 2 only: seed 0 at its rate is reused
    assert len(calls) == 6 + 4
    assert sorted(c[2] for c in calls[6:]) == [1, 1, 2, 2]
    report = (tmp_path / "report.md").read_text()
    assert "## Learning rate per setting" in report
    assert "**Warning:** dagpam's chosen rate 0.001 lies at the edge" in report
    assert "**Warning:** softmax" not in report
    # the header names the test split and each setting's rate, not the untuned --lr
    assert "Final test **accuracy**" in report and "Final validation" not in report
    assert "lr chosen per setting on validation (softmax 0.002, dagpam 0.001;" in report
    assert (tmp_path / "lr_curves.png").stat().st_size > 1000
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["tuning"]["chosen"] == best_val
    # a rerun trains nothing (every run is recorded with its hash)
    calls.clear()
    run_tuned(_cfg(), kind, tmp_path, [1e-3, 2e-3, 4e-3], [0], progress=False)
    assert calls == []


def test_run_hash_follows_the_runs_own_rate(kind) -> None:
    cfg = _cfg()
    spec = runner.grid(cfg)[0]
    h0 = runner.run_hash(cfg, kind, spec)
    spec.lr = 1e-3
    cfg2 = _cfg(train=TrainSettings(steps=10, batch_size=4, eval_every=10, eval_batches=1, lr=1e-3))
    assert runner.run_hash(cfg, kind, spec) != h0
    spec2 = runner.grid(cfg2)[0]
    assert runner.run_hash(cfg2, kind, spec2) == runner.run_hash(cfg, kind, spec)
    assert runner._train_config(cfg, spec).lr == 1e-3


def test_three_way_split_fractions_and_disjoint(tmp_path: Path) -> None:
    text = "".join(chr(ord("a") + i % 26) for i in range(1000))
    (tmp_path / "t.txt").write_text(text)
    (tmp_path / "v.txt").write_text("valid text")
    (tmp_path / "x.txt").write_text("test text")
    d = LMDataOptions(train=str(tmp_path / "t.txt"), tokenizer="char", holdout_fraction=0.1)
    tr, va, te, notes = lm_splits(d, None)
    assert (len(tr), len(va), len(te)) == (800, 100, 100)
    assert tr + va + te == text  # in order: disjoint ranges covering the text
    assert "train 0.8, validation 0.1, test 0.1" in notes[-1]
    d.valid = str(tmp_path / "v.txt")
    tr, va, te, _ = lm_splits(d, None)
    assert (tr + te, va, len(te)) == (text, "valid text", 100)
    d.valid = None
    tr, va, te, _ = lm_splits(d, str(tmp_path / "x.txt"))
    assert (tr + va, len(va), te) == (text, 100, "test text")
    with pytest.raises(ValueError, match="holdout_fraction"):
        lm_splits(LMDataOptions(train=str(tmp_path / "t.txt"), holdout_fraction=0.6), None)


def test_synthetic_test_set_is_seeded_apart(kind) -> None:
    tk = synthetic_test_kind(kind, 2, 8)
    assert tk.describe()["test"]["seed"] == TEST_SEED and tk.metric == kind.metric
    test = kind.task.batch(8, seed=TEST_SEED)
    for seed in (VAL_SEED, 0, 1_000_000):
        assert not torch.equal(test.inputs, kind.task.batch(8, seed=seed).inputs)
    model = kind.build(kind.model_config(_cfg(), runner.grid(_cfg())[0]))
    acc = tk.final_metric(model, {}, torch.device("cpu"))
    assert 0.0 <= acc <= 1.0


# differences dagpam - softmax per seed: std stays ~0.02, so MDE80 shrinks as seeds are added
def _diff(seed: int) -> float:
    return 0.05 + (0.02 if seed % 2 else -0.02) + 0.001 * seed


def _mde(n: int) -> float:
    d = [_diff(s) for s in range(n)]
    return paired_difference(d, [0.0] * n)["mde80"]


def _power_fake(monkeypatch, calls):
    def val(label, lr, seed):
        return 0.5 + (_diff(seed) if label == "dagpam" else 0.0)

    _fake(monkeypatch, val, val, calls)


def test_target_mde_stops_when_reached(tmp_path: Path, kind, monkeypatch) -> None:
    calls: list = []
    _power_fake(monkeypatch, calls)
    target = (_mde(5) + _mde(4)) / 2  # reached with 5 seeds, not with 4
    assert _mde(4) > target > _mde(5)
    res = run_to_power(_cfg(seeds=[0, 1]), kind, tmp_path, False, target_mde=target, max_seeds=20)
    p = res["power"]
    assert p["seeds"] == [0, 1, 2, 3, 4] and p["stopped_by"] == "target"
    assert p["reached"] == {"dagpam": True}
    assert p["mde80"]["dagpam"] == pytest.approx(_mde(5))
    assert len(calls) == 10  # each run trained once over the rounds
    report = (tmp_path / "report.md").read_text()
    assert "## Seeds by power" in report and "| dagpam |" in report.split("Seeds by power")[1]


def test_target_mde_stops_at_max_seeds(tmp_path: Path, kind, monkeypatch) -> None:
    calls: list = []
    _power_fake(monkeypatch, calls)
    res = run_to_power(
        _cfg(seeds=[0, 1]), kind, tmp_path, False, target_mde=_mde(5) / 2, max_seeds=3
    )
    p = res["power"]
    assert p["seeds"] == [0, 1, 2] and p["stopped_by"] == "max_seeds"
    assert p["reached"] == {"dagpam": False}
    assert "ended first" in (tmp_path / "report.md").read_text()


@pytest.mark.parametrize(
    ("kw", "match"), [({"target_mde": 0.0}, "target_mde"), ({"max_seeds": 1}, "max_seeds")]
)
def test_power_bad_arguments(tmp_path: Path, kind, kw, match) -> None:
    args = {"target_mde": 0.1, "max_seeds": 5, **kw}
    with pytest.raises(ValueError, match=match):
        run_to_power(_cfg(), kind, tmp_path, False, **args)


def test_cli_nmt_lrs_holds_out_a_test_split(tmp_path: Path, monkeypatch) -> None:
    import random

    from gpam.cli.main import main

    rng = random.Random(0)
    args = []
    for split, n in (("train", 40), ("valid", 6)):
        src = [" ".join(rng.choice("abcdefgh") for _ in range(rng.randint(2, 5))) for _ in range(n)]
        (tmp_path / f"{split}.src").write_text("\n".join(src) + "\n")
        (tmp_path / f"{split}.tgt").write_text("\n".join(s[::-1] for s in src) + "\n")
        args += [f"--{split}-src", str(tmp_path / f"{split}.src")]
        args += [f"--{split}-tgt", str(tmp_path / f"{split}.tgt")]
    seen = []
    real = runner.train_one

    def spy(config, kind, spec, run_dir, h):
        seen.append((len(kind.train_ids), len(kind.test_text), spec.lr))
        return real(config, kind, spec, run_dir, h)

    monkeypatch.setattr(runner, "train_one", spy)
    out = tmp_path / "out"
    argv = ["compare", "nmt", *args, "--tokenizer", "word", "--variants", "softmax,dagpam"]
    argv += ["--seeds", "0", "--lrs", "1e-3,2e-3", "--steps", "2", "--eval-every", "2"]
    argv += ["--d-model", "16", "--layers", "1", "--heads", "2", "--bleu-limit", "0"]
    assert main([*argv, "--out", str(out), "--quiet", "--threads", "1"]) == 0
    assert {s[:2] for s in seen} == {(36, 4)}  # 10 % of 40 training pairs are the test split
    assert len(seen) == 4  # 2 settings x 2 rates; the seed-0 final runs are the tune runs
    doc = json.loads((out / "results.json").read_text())
    assert doc["task"]["test"]["test_pairs"] == 4 and set(doc["tuning"]["chosen"]) == {
        "softmax",
        "dagpam",
    }
    for r in doc["runs"].values():
        assert r["final_metric"] != r["val_final_metric"]  # test vs validation perplexity
    assert "4 sentence pairs; the last 0.1 of the training pairs" in (out / "report.md").read_text()


def test_cli_plan_errors_are_one_line(tmp_path: Path, capsys) -> None:
    from gpam.cli.main import main

    base = ["compare", "synthetic", "--out", str(tmp_path / "o"), "--quiet"]
    assert main([*base, "--lrs", "1e-3,1e-3"]) == 2
    assert main([*base, "--target-mde", "0.1", "--max-seeds", "2"]) == 2
    assert main([*base, "--tune-seeds", "1"]) == 2  # would do nothing without --lrs
    assert main([*base, "--max-seeds", "4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and "lrs" in err[0] and "max_seeds" in err[1]
    assert "--tune-seeds is used with --lrs only" in err[2] and "--target-mde" in err[3]
    assert not (tmp_path / "o").exists()


def test_lm_test_kind_scores_the_test_stream(tmp_path: Path) -> None:
    from gpam.compare.test_split import lm_test_kind, prepare_lm_test_corpus
    from gpam.train.distributed import DistInfo
    from gpam.train.lm import LMTask

    text = "".join(chr(ord("a") + (i * 7) % 13) for i in range(3000))
    (tmp_path / "t.txt").write_text(text)
    d = LMDataOptions(train=str(tmp_path / "t.txt"), tokenizer="char", seq_len=16, batch_size=4)
    corpus, test_ids = prepare_lm_test_corpus(d, None)
    assert (corpus.train_ids.numel(), corpus.val_ids.numel(), test_ids.numel()) == (2400, 300, 300)
    kind = lm_test_kind(as_kind(corpus), test_ids, 4, None, corpus.notes[-1])
    cfg = _cfg(variants=["softmax"])
    torch.manual_seed(0)
    model = kind.build(kind.model_config(cfg, runner.grid(cfg)[0]))
    dev = torch.device("cpu")
    on_test = LMTask(corpus.train_ids, test_ids, d, 0, DistInfo(), dev).validate(model)
    on_val = LMTask(corpus.train_ids, corpus.val_ids, d, 0, DistInfo(), dev).validate(model)
    got = kind.final_metric(model, {}, dev)
    assert got == pytest.approx(on_test.metrics["perplexity"], rel=1e-6)
    assert got != pytest.approx(on_val.metrics["perplexity"], rel=1e-6)
    val = kind.val_final_metric(model, {"final_val_metrics": {"val_perplexity": 3.0}}, dev)
    assert val == 3.0 and kind.describe()["test"]["test_tokens"] == 300
