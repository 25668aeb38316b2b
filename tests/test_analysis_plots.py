"""Plots a reader can read (issue 20 item 21): one fixed, distinct colour per variant in every
plot (a distinct fallback for names not known yet), more than one labelled tick on log axes
that span less than a decade, the phase threshold in the legend."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import pytest
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

import gpam
from gpam.analysis import plots
from gpam.analysis.phase import PhaseConfig, phase
from gpam.analysis.phase_outputs import dilemma_plot

matplotlib.use("Agg")


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    """Every figure saved while the test runs (inspected after saving)."""
    saved: list[Figure] = []
    original = Figure.savefig

    def record(self, *args, **kwargs):
        saved.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", record)
    return saved


def _labelled_ticks(ax, axis: str = "y") -> list[str]:
    """The non-empty major tick labels inside the axis' view limits (after a draw)."""
    ax.figure.canvas.draw()
    lo, hi = sorted(ax.get_ylim() if axis == "y" else ax.get_xlim())
    ticks = ax.yaxis.get_major_ticks() if axis == "y" else ax.xaxis.get_major_ticks()
    return [
        t.label1.get_text()
        for t in ticks
        if t.label1.get_text() and lo <= t.get_loc() <= hi and t.label1.get_visible()
    ]


def test_every_variant_has_its_own_fixed_colour() -> None:
    names = list(dict.fromkeys([*gpam.VARIANTS, "gated"]))  # gated is in VARIANTS now
    colours = [plots.variant_colour(v) for v in names]
    assert len(set(colours)) == len(names)  # softmax/dagpam and centered/diff no longer share
    assert plots.variant_colour("softmax") == plots.variant_colour("softmax")
    unknown = plots.variant_colour("a variant added later")
    assert unknown in plots.FALLBACK_COLOURS and unknown not in plots.VARIANT_COLOURS.values()
    assert unknown == plots.variant_colour("a variant added later")  # the same in every plot


def test_series_styles_colour_by_variant_and_style_by_setting() -> None:
    st = plots.series_styles(["softmax", "dagpam", "dagpam", "cog"])
    assert st[1]["color"] == st[2]["color"] == plots.VARIANT_COLOURS["dagpam"]
    assert (st[1]["ls"], st[1]["marker"]) != (st[2]["ls"], st[2]["marker"])
    assert st[0]["color"] != st[1]["color"] != st[3]["color"]
    sweep = plots.series_styles(["dagpam"] * 3)  # one variant's settings: colours tell them apart
    assert len({s["color"] for s in sweep}) == 3


@pytest.mark.parametrize(
    ("values", "least"), [([0.4, 3.0], 3), ([0.95, 1.05], 2), ([1.2, 40.0], 3), ([1e-16, 1.0], 5)]
)
def test_log_axis_has_several_labelled_ticks(values: list[float], least: int) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], values)
    plots.log_y(ax, values)
    got = _labelled_ticks(ax)
    plt.close(fig)
    assert len(got) >= least, got


def test_dilemma_plot_colours_ticks_and_legend(tmp_path: Path, figures: list[Figure]) -> None:
    cfg = PhaseConfig(
        depth=3,
        length=8,
        width=16,
        heads=2,
        trials=1,
        batch=1,
        variants=["softmax", "dagpam", "centered", "diff"],
        lam_neg=[1.0],
        neg_query=["linear"],
        qk_gains=[1.0, 2.0, 4.0],
    )
    res = phase(cfg, show_progress=False)
    dilemma_plot(res["results"], "attention_norm", 1.0, 0.5, tmp_path / "d.png")
    (fig,) = figures
    left, right = fig.axes[:2]
    lines = {ln.get_label(): to_hex(ln.get_color()) for ln in left.get_lines()}
    want = {
        "softmax": "softmax",
        "dagpam lam_neg=1": "dagpam",
        "centered": "centered",
        "diff": "diff",
    }
    for label, variant in want.items():
        assert lines[label] == plots.VARIANT_COLOURS[variant]
    assert len({lines[k] for k in want}) == 4
    legend = [t.get_text() for t in left.get_legend().get_texts()]
    assert "threshold 0.5 (out of collapse)" in legend
    assert "uniform row (1)" in [t.get_text() for t in right.get_legend().get_texts()]
    assert len(_labelled_ticks(right)) >= 2  # the Jacobian spans less than a decade
    assert _labelled_ticks(left, "x") == ["1", "2", "4"]


def test_compare_loss_curves_have_several_labelled_ticks(
    tmp_path: Path, figures: list[Figure]
) -> None:
    from gpam.compare.report import plot_curves
    from test_compare_report_numbers import DAG, SOFT, T3, T3_DAG, _summary

    runs, s = _summary(T3, T3_DAG, SOFT, DAG)
    for r in runs.values():
        r["attention"] = r["label"]
        for i, p in enumerate(r["curve"]):
            p["train_loss"] = 2.5 / (1 + i) ** 0.8  # 2.5 down to 1.04: under half a decade
    plot_curves({"summary": s, "runs": runs, "task": {"task": "copy"}}, tmp_path)
    loss = next(f for f in figures if "training loss" in f.axes[0].get_ylabel())
    assert len(_labelled_ticks(loss.axes[0])) >= 3
    colours = {ln.get_label(): to_hex(ln.get_color()) for ln in loss.axes[0].get_lines()}
    assert colours["dagpam"] == plots.VARIANT_COLOURS["dagpam"] != colours["softmax"]
