"""`gpam.compare` end to end on a tiny grid: results schema, report, resume, matched parameters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import gpam.compare.runner as runner
from gpam.cli.main import main
from gpam.compare.kinds import as_kind
from gpam.compare.runner import MATCHED, SCHEMA, CompareConfig, grid, matched_d_ff, run_compare
from gpam.compare.settings import TrainSettings
from gpam.data.synthetic import make_task


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: one thread avoids oversubscription on a busy 2-core machine."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _tiny(**kw) -> CompareConfig:
    base = dict(
        task="copy",
        variants=["softmax", "dagpam"],
        seeds=[0, 1],
        d_model=16,
        n_layers=1,
        n_heads=2,
        train=TrainSettings(steps=3, batch_size=4, eval_every=2, eval_batches=1, eval_batch_size=4),
    )
    base.update(kw)
    return CompareConfig(**base)


@pytest.fixture
def task():
    return make_task("copy", length=4, n_symbols=4)


@pytest.fixture
def counted(monkeypatch):
    calls: list[int] = []
    real = runner.train_one

    def wrapper(config, kind, spec, run_dir, h):
        calls.append(spec.seed)
        return real(config, kind, spec, run_dir, h)

    monkeypatch.setattr(runner, "train_one", wrapper)
    return calls


def test_tiny_grid_schema_report_and_resume(tmp_path: Path, task, counted) -> None:
    cfg = _tiny(match_params=True)
    res = run_compare(cfg, task, tmp_path, progress=False)
    assert len(counted) == 6  # (softmax, dagpam, matched) x 2 seeds
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["schema"] == SCHEMA and doc["kind"] == "synthetic"
    assert set(doc["runs"]) == {s.key for s in grid(cfg, matched_d_ff(cfg, as_kind(task)))}
    for r in doc["runs"].values():
        assert r["status"] == "done" and r["steps"] == 3
        for k in ("final_metric", "params", "overhead_pct", "time_per_step_ms", "peak_memory_mb"):
            assert isinstance(r[k], (int, float)) and r[k] >= 0
        assert 0.0 <= r["final_metric"] <= 1.0 and 0.0 <= r["rank_collapse"] <= 1.0
        assert [c["step"] for c in r["curve"]] == [2, 3]
    rows = {r["label"]: r for r in res["summary"]["variants"]}
    assert set(rows) == {"softmax", "dagpam", MATCHED}
    assert rows["dagpam"]["params"] > rows["softmax"]["params"]
    assert rows["dagpam"]["overhead_pct"] > 0
    # matched softmax is at least daGPAM's size and closer to it than plain softmax
    assert rows[MATCHED]["params"] >= rows["dagpam"]["params"]
    gap = rows[MATCHED]["params"] - rows["dagpam"]["params"]
    assert gap < rows["dagpam"]["params"] - rows["softmax"]["params"]
    assert "vs_softmax" in rows["dagpam"] and rows["dagpam"]["vs_softmax"]["n"] == 2
    assert "vs_softmax" not in rows["softmax"]
    assert rows["dagpam"]["curve_mean_vs_softmax"]["n"] == 2
    assert 0.0 <= rows["softmax"]["curve_mean_mean"] <= 1.0
    report = (tmp_path / "report.md").read_text()
    assert "| dagpam |" in report and "Pearson" in report and "Learning speed" in report
    for png in ("curves_metric.png", "curves_loss.png", "rank_vs_metric.png"):
        assert (tmp_path / png).stat().st_size > 1000

    # same settings again: nothing retrained, numbers unchanged
    run_compare(cfg, task, tmp_path, progress=False)
    assert len(counted) == 6
    again = json.loads((tmp_path / "results.json").read_text())
    assert again["runs"] == doc["runs"]

    # an interrupted compare: drop one finished run, only that one is redone
    del doc["runs"]["dagpam/seed=1"]
    (tmp_path / "results.json").write_text(json.dumps(doc))
    run_compare(cfg, task, tmp_path, progress=False)
    assert counted[6:] == [1]

    # a different budget for the same cell: it is redone, not skipped
    short = TrainSettings(steps=2, batch_size=4, eval_every=2, eval_batches=1, eval_batch_size=4)
    redo = run_compare(
        _tiny(variants=["softmax"], seeds=[0], train=short), task, tmp_path, progress=False
    )
    assert counted[7:] == [0] and redo["runs"]["softmax/seed=0"]["steps"] == 2


def test_same_seed_is_reproducible(tmp_path: Path, task) -> None:
    cfg = _tiny(variants=["dagpam"], seeds=[3])
    a = run_compare(cfg, task, tmp_path / "a", progress=False)["runs"]["dagpam/seed=3"]
    b = run_compare(cfg, task, tmp_path / "b", progress=False)["runs"]["dagpam/seed=3"]
    assert (
        a["final_loss"] == b["final_loss"]
        and a["curve"][0]["train_loss"] == b["curve"][0]["train_loss"]
    )


def test_lambda_grid_labels(task) -> None:
    cfg = _tiny(lam_negs=[0.25, 1.0], seeds=[0])
    labels = [s.label for s in grid(cfg)]
    assert labels == ["softmax", "dagpam(lam=0.25)", "dagpam(lam=1)"]


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"variants": ["softmax", "nope"]}, "variants"),
        ({"seeds": [1, 1]}, "seeds"),
        ({"lam_negs": [-1.0]}, "lam_negs"),
        ({"variants": ["softmax"], "match_params": True}, "match_params"),
    ],
)
def test_bad_config_raises(tmp_path: Path, task, kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        run_compare(_tiny(**kw), task, tmp_path, progress=False)


def test_cli_compare_synthetic_and_errors(tmp_path: Path, capsys) -> None:
    out = tmp_path / "c"
    argv = [
        "compare",
        "synthetic",
        "--task",
        "reverse",
        "--task-option",
        "length=3",
        "--variants",
        "softmax,cog",
        "--seeds",
        "0,1",
        "--steps",
        "2",
        "--batch-size",
        "4",
        "--eval-batches",
        "1",
        "--d-model",
        "16",
        "--n-layers",
        "1",
        "--n-heads",
        "2",
        "--out",
        str(out),
        "--quiet",
    ]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "| cog |" in text and f"report: {out / 'report.md'}" in text
    assert (out / "results.json").is_file()
    assert main(["compare", "synthetic", "--variants", "softmax,bogus", "--out", str(out)]) == 2
    assert "variants" in capsys.readouterr().err
    assert main(["compare", "synthetic", "--task", "nope", "--out", str(out)]) == 2


def test_cli_compare_lm_on_a_text_file(tmp_path: Path, capsys) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text("the cat sat on the mat. " * 40)
    out = tmp_path / "lm"
    argv = [
        "compare",
        "lm",
        "--train",
        str(corpus),
        "--seq-len",
        "16",
        "--variants",
        "softmax,dagpam",
        "--seeds",
        "0",
        "--steps",
        "2",
        "--batch-size",
        "4",
        "--max-eval-tokens",
        "200",
        "--d-model",
        "16",
        "--n-layers",
        "1",
        "--n-heads",
        "2",
        "--out",
        str(out),
        "--quiet",
    ]
    assert main(argv) == 0
    doc = json.loads((out / "results.json").read_text())
    assert doc["summary"]["metric"] == "perplexity"
    assert all(r["final_metric"] > 1.0 for r in doc["runs"].values())
    assert main(["compare", "lm", "--train", str(tmp_path / "missing.txt"), "--out", str(out)]) == 2


def test_compare_lm_on_real_corpus(data_dir: Path, tmp_path: Path) -> None:
    """Tiny Shakespeare (character level) through the same grid: perplexity below uniform."""
    from gpam.data.lm import LMDataOptions, prepare_lm_corpus

    d = LMDataOptions(
        train=str(data_dir / "tinyshakespeare" / "input.txt"), max_chars=30000, seq_len=32
    )
    task = prepare_lm_corpus(d)
    assert 30 < task.vocab_size < 100
    cfg = _tiny(kind="lm", task=task.name, variants=["softmax"], seeds=[0])
    cfg.train.steps = 30
    cfg.train.lr = 1e-2
    doc = run_compare(cfg, task, tmp_path, progress=False)
    ppl = doc["runs"]["softmax/seed=0"]["final_metric"]
    assert 1.0 < ppl < task.vocab_size  # learned something beyond a uniform guess


def test_curve_mean_is_the_mean_over_evaluation_points() -> None:
    from gpam.compare.runner import curve_mean

    run = {"curve": [{"step": 1, "val_metric": 0.2}, {"step": 2, "val_metric": 0.6}]}
    assert curve_mean(run) == pytest.approx(0.4)
    assert curve_mean({"curve": [{"step": 1, "val_loss": 1.0}]}) is None
