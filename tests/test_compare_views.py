"""The two views of a comparison (equal steps, equal training time), their paired tests and power,
on hand-made results with known answers (no training)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from gpam.compare.grid import CompareConfig
from gpam.compare.report import format_steps_table, format_time_table, write_report
from gpam.compare.runner import curve_quantity, run_time, summarize_runs, value_at
from gpam.compare.settings import TrainSettings
from gpam.compare.stats import (
    ci_half_width,
    interpolate_at,
    min_detectable_effect,
    paired_difference,
)


def test_interpolate_at_linear_and_no_extrapolation() -> None:
    assert interpolate_at([1.0, 3.0], [10.0, 30.0], 2.5) == pytest.approx(25.0)
    assert interpolate_at([1.0, 3.0], [10.0, 30.0], 3.0) == 30.0
    assert interpolate_at([1.0, 3.0], [10.0, 30.0], 1.0) == 10.0
    assert interpolate_at([1.0, 3.0], [10.0, 30.0], 3.0001) is None
    assert interpolate_at([1.0, 3.0], [10.0, 30.0], 0.5) is None
    assert interpolate_at([], [], 0.0) is None
    with pytest.raises(ValueError, match="non-decreasing"):
        interpolate_at([2.0, 1.0], [0.0, 1.0], 1.5)
    with pytest.raises(ValueError, match="same length"):
        interpolate_at([1.0, 2.0], [0.0], 1.5)


def test_ci_half_width_known_value() -> None:
    # t_{0.975, 2} = 4.302652729911275
    assert ci_half_width(1.0, 3) == pytest.approx(4.302652729911275 / math.sqrt(3))
    assert math.isnan(ci_half_width(1.0, 1))


def test_min_detectable_effect_has_the_stated_power() -> None:
    """Monte Carlo: normal differences with mean MDE and std sigma are detected ~80 % of the time
    by the two-sided paired t-test at 5 % (and ~5 % when the mean is 0)."""
    rng = np.random.default_rng(0)
    for n in (2, 3, 5):  # n = 2: the integrated path (nct is NaN there)
        sigma = 0.7
        mde = min_detectable_effect(sigma, n)
        crit = stats.t.ppf(0.975, n - 1)
        for mean, expect in ((mde, 0.80), (0.0, 0.05)):
            d = rng.normal(mean, sigma, size=(40_000, n))
            t = d.mean(1) / (d.std(1, ddof=1) / math.sqrt(n))
            assert np.mean(np.abs(t) > crit) == pytest.approx(expect, abs=0.01)
    # scales with sigma; tends to the normal formula (z_.975 + z_.8) sigma / sqrt(n) for large n
    assert min_detectable_effect(2.0, 3) == pytest.approx(2 * min_detectable_effect(1.0, 3))
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
    assert min_detectable_effect(1.0, 2000) == pytest.approx(z / math.sqrt(2000), rel=2e-3)
    assert math.isnan(min_detectable_effect(0.0, 3)) and math.isnan(min_detectable_effect(1.0, 1))
    with pytest.raises(ValueError, match="power"):
        min_detectable_effect(1.0, 3, power=1.0)


def test_paired_difference_reports_its_power() -> None:
    d = paired_difference([11.0, 22.0, 33.0], [10.0, 20.0, 30.0])  # differences 1, 2, 3: sd 1
    assert d["half_width"] == pytest.approx(d["ci_high"] - d["mean"])
    assert d["mde80"] == pytest.approx(min_detectable_effect(1.0, 3))
    assert d["mde80"] > d["half_width"]


# ---- hand-made runs -------------------------------------------------------------------------


def _run(label: str, seed: int, times: list[float], vals: list[float], **kw) -> dict:
    steps = [10 * (i + 1) for i in range(len(times))]
    curve = [
        {"step": s, "elapsed_s": t, "train_loss": 1.0, "val_loss": 1.0 + v, "val_metric": v}
        for s, t, v in zip(steps, times, vals)
    ]
    run = {
        "label": label,
        "seed": seed,
        "status": "done",
        "final_metric": vals[-1],
        "final_loss": 1.0 + vals[-1],
        "steps": steps[-1],
        "params": 100 if label == "softmax" else 110,
        "overhead_pct": 0.0 if label == "softmax" else 10.0,
        "time_per_step_ms": 1.0,
        "peak_memory_mb": 1.0,
        "rank_collapse": 0.5 + 0.01 * seed,
        "budget_clock": "cpu",
        "model_config": {"d_ff": 64},
        "curve": curve,
    }
    run.update(kw)
    return run


# softmax: 1 s per 10 steps, dagpam: 2 s per 10 steps, 30 steps each: T = softmax's total 3 s,
# by which dagpam had done 15 steps.
SOFT = {0: [0.50, 0.60, 0.70], 1: [0.40, 0.55, 0.65], 2: [0.45, 0.50, 0.72]}
DAG = {0: [0.55, 0.70, 0.80], 1: [0.50, 0.60, 0.76], 2: [0.60, 0.66, 0.78]}


def _runs(drop: str | None = None) -> dict:
    runs = {}
    for s in (0, 1, 2):
        runs[f"softmax/seed={s}"] = _run("softmax", s, [1.0, 2.0, 3.0], SOFT[s])
        runs[f"dagpam/seed={s}"] = _run("dagpam", s, [2.0, 4.0, 6.0], DAG[s])
    runs.pop(drop, None)
    return runs


def _config() -> CompareConfig:
    return CompareConfig(
        task="copy",
        variants=["softmax", "dagpam"],
        seeds=[0, 1, 2],
        train=TrainSettings(steps=30, budget_clock="cpu"),
    )


def test_value_at_and_run_time() -> None:
    r = _run("dagpam", 0, [2.0, 4.0, 6.0], DAG[0])
    assert run_time(r) == 6.0
    assert value_at(r, "elapsed_s", 3.0, "val_metric") == pytest.approx(0.625)
    assert value_at(r, "elapsed_s", 1.0, "val_metric") is None  # before the first evaluation
    assert value_at(r, "elapsed_s", 1.0, "step") == pytest.approx(5.0)  # from (0 s, step 0)
    assert value_at(r, "step", 20, "val_metric") == pytest.approx(0.70)
    assert curve_quantity([r]) == "val_metric"
    del r["curve"][1]["val_metric"]
    assert curve_quantity([r]) == "val_loss"


def test_summary_equal_steps_and_equal_time_known_answers() -> None:
    s = summarize_runs(_runs(), _config(), "accuracy")
    v = s["views"]
    assert v["step"] == 30 and v["same_steps"] and v["clock"] == "cpu"
    assert v["time"] == 3.0 and v["quantity"] == "val_metric"
    rows = {r["label"]: r for r in s["variants"]}
    dag, soft = rows["dagpam"], rows["softmax"]
    # equal steps: final values at step 30
    fin = [DAG[i][-1] - SOFT[i][-1] for i in range(3)]
    assert dag["vs_softmax"]["mean"] == pytest.approx(np.mean(fin))
    assert dag["at_step_vs_softmax"]["mean"] == pytest.approx(np.mean(fin))
    # equal time T = 3 s: softmax at its end (step 30), dagpam halfway between 2 s and 4 s
    at_t = {i: (DAG[i][0] + DAG[i][1]) / 2 for i in range(3)}
    assert soft["at_time"]["mean"] == pytest.approx(np.mean([SOFT[i][2] for i in range(3)]))
    assert dag["at_time"]["mean"] == pytest.approx(np.mean(list(at_t.values())))
    d = dag["at_time_vs_softmax"]
    diffs = [at_t[i] - SOFT[i][2] for i in range(3)]
    ref = stats.ttest_rel([at_t[i] for i in range(3)], [SOFT[i][2] for i in range(3)])
    assert d["mean"] == pytest.approx(np.mean(diffs)) and d["p"] == pytest.approx(ref.pvalue)
    half = stats.t.ppf(0.975, 2) * np.std(diffs, ddof=1) / math.sqrt(3)
    assert d["ci_high"] - d["mean"] == pytest.approx(half)
    assert d["mde80"] == pytest.approx(min_detectable_effect(float(np.std(diffs, ddof=1)), 3))
    # the slower variant had done 15 steps by T; softmax all 30
    assert dag["steps_at_time"] == pytest.approx(15.0) and soft["steps_at_time"] == 30.0
    assert dag["train_time_mean"] == 6.0 and soft["train_time_mean"] == 3.0
    assert dag["clock_ms_per_step"] == pytest.approx(200.0)  # 6 s / 30 steps
    assert "at_time_vs_softmax" not in soft


def test_summary_pairs_only_common_seeds() -> None:
    s = summarize_runs(_runs(drop="softmax/seed=2"), _config(), "accuracy")
    dag = next(r for r in s["variants"] if r["label"] == "dagpam")
    assert dag["at_time"]["n"] == 3 and dag["at_time_vs_softmax"]["n"] == 2
    assert dag["vs_softmax"]["n"] == 2
    assert dag["at_time_vs_softmax"]["mean"] == pytest.approx(
        np.mean([(DAG[i][0] + DAG[i][1]) / 2 - SOFT[i][2] for i in (0, 1)])
    )


def test_summary_falls_back_to_loss_without_per_eval_metric() -> None:
    runs = _runs()
    for r in runs.values():
        for p in r["curve"]:
            del p["val_metric"]
    s = summarize_runs(runs, _config(), "bleu")
    assert s["views"]["quantity"] == "val_loss" and s["views"]["quantity_name"] == "loss"
    assert not s["views"]["quantity_higher_is_better"]
    dag = next(r for r in s["variants"] if r["label"] == "dagpam")
    # val_loss = 1 + value: the same differences as the metric
    assert dag["at_time_vs_softmax"]["mean"] == pytest.approx(
        np.mean([(DAG[i][0] + DAG[i][1]) / 2 - SOFT[i][2] for i in range(3)])
    )
    table = format_steps_table(s)
    assert "val loss at step 30" in table and "bleu at step 30" in table


def test_unequal_steps_and_report(tmp_path: Path) -> None:
    runs = _runs()
    runs["dagpam/seed=0"] = _run("dagpam", 0, [2.0, 4.0], DAG[0][:2])  # stopped at step 20
    s = summarize_runs(runs, _config(), "accuracy")
    assert s["views"]["step"] == 20 and not s["views"]["same_steps"]
    assert s["views"]["time"] == 3.0
    soft = next(r for r in s["variants"] if r["label"] == "softmax")
    assert soft["at_step"]["mean"] == pytest.approx(np.mean([SOFT[i][1] for i in range(3)]))
    results = {
        "kind": "synthetic",
        "task": {"task": "copy"},
        "config": _config().to_dict(),
        "runs": runs,
        "summary": s,
    }
    write_report(results, tmp_path)
    text = (tmp_path / "report.md").read_text()
    assert "## Equal steps" in text and "stopped at different step counts" in text
    assert "## Equal training time (T = 3 s, clock: cpu)" in text
    assert "process CPU seconds" in text and "Power: with n = 3 paired seeds" in text
    assert "The clock's own noise" in text  # dagpam seed 0 stopped at 4 s, the others 6 s
    assert "MDE₈₀" in format_time_table(s)
    for png in ("curves_time.png", "curves_metric.png"):
        assert (tmp_path / png).stat().st_size > 1000
    assert "![curves_time](curves_time.png)" in text


def test_clock_noise_between_seeds_is_reported() -> None:
    runs = _runs()
    runs["softmax/seed=1"] = _run("softmax", 1, [1.0, 2.0, 3.6], SOFT[1])  # 3, 3.6, 3 s
    s = summarize_runs(runs, _config(), "accuracy")
    sp = s["views"]["time_spread"]
    assert sp["label"] == "softmax" and sp["rel"] == pytest.approx(0.6 / 3.2)
    assert s["views"]["time"] == 3.0
