"""What the compare report's numbers say (issue 20, items 17-19), on hand-made results: one cost
figure from one named clock, intervals past a metric's range clipped and marked, equal-time rows
whose clock noise exceeds their cost difference marked, the residual column named for what it
measures."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from gpam.compare.grid import CompareConfig
from gpam.compare.report import (
    CLIPPED,
    NOISY,
    RESIDUAL,
    format_steps_table,
    format_table,
    format_time_table,
    notes,
    write_report,
)
from gpam.compare.runner import summarize_runs
from gpam.compare.settings import TrainSettings
from gpam.compare.stats import clip_interval, difference_range
from test_compare_views import _run


def _config(seeds: list[int], clock: str = "cpu") -> CompareConfig:
    return CompareConfig(
        task="copy",
        variants=["softmax", "dagpam"],
        seeds=seeds,
        train=TrainSettings(steps=30, budget_clock=clock),
    )


def _summary(soft_times: dict, dag_times: dict, soft: dict, dag: dict, clock: str = "cpu"):
    runs = {}
    for s in soft:
        # median wall step: dagpam "looks" faster (1 ms) than softmax (5 ms) on this figure
        runs[f"softmax/seed={s}"] = _run("softmax", s, soft_times[s], soft[s], time_per_step_ms=5.0)
        runs[f"dagpam/seed={s}"] = _run("dagpam", s, dag_times[s], dag[s], time_per_step_ms=1.0)
    for r in runs.values():
        r["budget_clock"] = clock
    return runs, summarize_runs(runs, _config(sorted(soft), clock), "accuracy")


def _row(table: str, label: str) -> list[str]:
    line = next(x for x in table.splitlines() if x.startswith(f"| {label} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def _header(table: str) -> list[str]:
    return [c.strip() for c in table.splitlines()[0].strip("|").split("|")]


# three seeds, softmax 1 s per 10 steps, dagpam 2 s per 10 steps (30 steps each)
T3 = {s: [1.0, 2.0, 3.0] for s in range(3)}
T3_DAG = {s: [2.0, 4.0, 6.0] for s in range(3)}
SOFT = {0: [0.50, 0.60, 0.70], 1: [0.40, 0.55, 0.65], 2: [0.45, 0.50, 0.72]}
DAG = {0: [0.55, 0.70, 0.80], 1: [0.50, 0.60, 0.76], 2: [0.60, 0.66, 0.78]}


def test_one_cost_figure_from_the_named_clock(tmp_path: Path) -> None:
    runs, s = _summary(T3, T3_DAG, SOFT, DAG)
    main, timed = format_table(s), format_time_table(s)
    for table in (main, timed):
        head = _header(table)
        col = head.index("ms/step (cpu clock)")  # the clock is named in the header
        assert [h for h in head if "ms/step" in h] == ["ms/step (cpu clock)"]
        # 6 s / 30 steps = 200 ms, 3 s / 30 steps = 100 ms: never the median wall step
        assert _row(table, "dagpam")[col] == "200" and _row(table, "softmax")[col] == "100"
    cfg = _config([0, 1, 2]).to_dict()
    results = {"kind": "synthetic", "task": {"task": "copy"}, "config": cfg, "runs": runs}
    write_report({**results, "summary": s}, tmp_path)
    text = (tmp_path / "report.md").read_text()
    headers = [c for line in text.splitlines() if line.startswith("| variant") for c in
               line.split("|") if "ms/step" in c]  # fmt: skip
    assert {h.strip() for h in headers} == {"ms/step (cpu clock)"} and len(headers) == 2
    assert "process CPU seconds" in text and "the one cost figure of this report" in text


def test_step_budget_uses_the_median_wall_step_everywhere() -> None:
    _, s = _summary(T3, T3_DAG, SOFT, DAG, clock="steps")
    head = _header(format_table(s))
    assert "ms/step (wall clock, median step)" in head
    col = head.index("ms/step (wall clock, median step)")
    assert _row(format_table(s), "dagpam")[col] == "1"
    timed = format_time_table(s)
    assert "ms/step (wall clock, median step)" in _header(timed)
    assert "wall clock, median step" in notes(s)[0]


def test_clip_interval_and_difference_range() -> None:
    assert difference_range("accuracy") == (-1.0, 1.0)
    assert difference_range("bleu") == (-100.0, 100.0)
    assert difference_range("perplexity") == (-math.inf, math.inf)
    assert difference_range("no such metric") == (-math.inf, math.inf)
    assert clip_interval(-2.06, 2.77, (-1.0, 1.0)) == (-1.0, 1.0, True, True)
    assert clip_interval(-0.2, 0.3, (-1.0, 1.0)) == (-0.2, 0.3, False, False)
    lo, hi, a, b = clip_interval(math.nan, math.nan, (-1.0, 1.0))
    assert math.isnan(lo) and math.isnan(hi) and not (a or b)


def test_accuracy_interval_past_its_range_is_clipped_and_flagged() -> None:
    # 2 seeds, paired accuracy differences +0.5 and -0.3: t_{0.975,1} = 12.7 gives [-4.98, 5.18]
    soft = {0: [0.2, 0.3, 0.3], 1: [0.5, 0.6, 0.8]}
    dag = {0: [0.3, 0.5, 0.8], 1: [0.4, 0.5, 0.5]}
    _, s = _summary({0: T3[0], 1: T3[1]}, {0: T3_DAG[0], 1: T3_DAG[1]}, soft, dag)
    d = next(r for r in s["variants"] if r["label"] == "dagpam")["vs_softmax"]
    assert d["ci_low"] < -1 and d["ci_high"] > 1 and d["mde80"] > 1  # the raw figures stay
    cell = _row(format_table(s), "dagpam")[3]
    assert cell == f"+0.1 [-1{CLIPPED}, 1{CLIPPED}]"
    steps = format_steps_table(s)
    assert _row(steps, "dagpam")[2] == cell and _row(steps, "dagpam")[4] == f"> 1{CLIPPED}"
    text = "\n".join(notes(s))
    assert CLIPPED in text and "accuracy in [-1, 1]" in text and "shown clipped" in text
    for t in (format_table(s), steps, format_time_table(s)):  # no unclipped end is printed
        assert not re.search(r"\[-[2-9]|, [2-9]", t)


def test_interval_within_range_is_not_flagged() -> None:
    _, s = _summary(T3, T3_DAG, SOFT, DAG)
    assert CLIPPED not in format_table(s) + format_steps_table(s) + format_time_table(s)
    assert not any(CLIPPED in n for n in notes(s))


def test_row_whose_clock_noise_exceeds_its_cost_difference_is_marked() -> None:
    # dagpam costs what softmax costs per step on average, but softmax's seeds took 3 s and 4.5 s
    # (spread 40 % of their mean): the equal-time comparison cannot tell cost from clock
    soft_t = {0: [1.0, 2.0, 3.0], 1: [1.5, 3.0, 4.5]}
    dag_t = {0: [1.25, 2.5, 3.75], 1: [1.25, 2.5, 3.75]}
    soft = {0: [0.5, 0.6, 0.7], 1: [0.4, 0.55, 0.65]}
    dag = {0: [0.45, 0.5, 0.6], 1: [0.35, 0.5, 0.58]}
    _, s = _summary(soft_t, dag_t, soft, dag)
    timed = format_time_table(s)
    head = _header(timed)
    row = _row(timed, "dagpam")
    assert row[head.index("p")].endswith(NOISY)
    assert row[head.index("clock noise / cost vs softmax")] == f"40 % / +0 %{NOISY}"
    assert _row(timed, "softmax")[head.index("clock noise / cost vs softmax")] == "40 %"
    assert any(n.startswith(f"- {NOISY} (equal training time: dagpam)") for n in notes(s))


def test_row_with_quiet_clock_is_not_marked() -> None:
    _, s = _summary(T3, T3_DAG, SOFT, DAG)  # no spread between seeds, dagpam costs 2x
    timed = format_time_table(s)
    assert NOISY not in timed and not any(NOISY in n for n in notes(s))
    head = _header(timed)
    assert _row(timed, "dagpam")[head.index("clock noise / cost vs softmax")] == "0 % / +100 %"


@pytest.mark.parametrize("clock", ["cpu", "steps"])
def test_residual_column_is_named_for_what_it_measures(clock: str) -> None:
    _, s = _summary(T3, T3_DAG, SOFT, DAG, clock=clock)
    head = _header(format_table(s))
    assert RESIDUAL == "residual (1 = spread, 0 = collapsed)" and head[-1] == RESIDUAL
    assert not any(h == "rank collapse" for h in head)
