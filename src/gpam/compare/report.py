"""``report.md`` and plots of a comparison: the equal-steps and equal-training-time views of the
same runs with paired tests and their power, learning curves against steps and training time,
final residual (rank collapse) vs final metric.

One cost figure per report (:func:`cost_column`): every ms/step cell comes from the same clock,
named in its header. Intervals reaching past the values a metric can take are shown clipped and
marked ``†``; equal-time rows whose clock noise is at least the cost difference they rest on are
marked ``‡`` (:func:`notes`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from gpam._io import atomic_write_text
from gpam.compare.pairing import pairing_text
from gpam.compare.stats import clip_interval, difference_range

CLIPPED = "†"  # an interval end or MDE past the range of the metric's differences
NOISY = "‡"  # clock noise >= the per-step cost difference an equal-time row rests on
RESIDUAL = "residual (1 = spread, 0 = collapsed)"


def _f(x: Any, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}g}" if isinstance(x, float) else str(x)


def _pm(mean: float, std: float, digits: int = 4) -> str:
    return _f(mean, digits) if not math.isfinite(std) else f"{_f(mean, digits)} ± {_f(std, 2)}"


def format_table(summary: dict[str, Any]) -> str:
    """The main comparison table as markdown (one row per variant label)."""
    metric = summary["metric"]
    cost, cost_key = cost_column(summary)
    lines = [
        f"| variant | {metric} (mean ± std) | n | Δ vs softmax [95% CI] | p | params | "
        f"overhead | {cost} | peak MB | {RESIDUAL} |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in summary["variants"]:
        diff, p, _ = _diff(r.get("vs_softmax"), metric)
        lines.append(
            f"| {r['label']} | {_pm(r['metric_mean'], r['metric_std'])} | {r['metric_n']} | {diff} "
            f"| {p} | {r['params']:,} | {r['overhead_pct']:+.2f}% | {_f(r.get(cost_key), 3)} "
            f"| {_f(r['peak_memory_mb'], 3)} | {_f(r['rank_collapse'], 3)} |"
        )
    return "\n".join(lines)


def cost_column(summary: dict[str, Any]) -> tuple[str, str]:
    """``(header, row key)`` of the report's one ms/step figure: total training time on the
    budget clock / steps (mean over seeds) for a cpu or wall budget clock; with a step budget
    (or mixed clocks) the engine's median wall-clock step time. Every table uses this one."""
    clock = summary.get("views", {}).get("clock")
    if clock in ("cpu", "wall"):
        return f"ms/step ({clock} clock)", "clock_ms_per_step"
    return "ms/step (wall clock, median step)", "time_per_step_ms"


def cost_text(summary: dict[str, Any]) -> str:
    """What the ms/step column measures (one sentence for the report's notes)."""
    header, key = cost_column(summary)
    if key == "clock_ms_per_step":
        clock = summary["views"]["clock"]
        what = "process CPU seconds" if clock == "cpu" else "wall seconds"
        return (
            f"{header}: total training time on the {clock} clock ({what}, validation excluded) "
            "/ steps, mean over seeds; the one cost figure of this report (every ms/step in it "
            "is this one)."
        )
    return (
        f"{header}: the engine's median wall-clock training step, median over seeds; the one "
        "cost figure of this report (every ms/step in it is this one)."
    )


def _out_of_range(d: dict[str, Any] | None, name: str) -> bool:
    """True when the interval or MDE₈₀ of ``d`` (a difference of ``name`` values) reaches past
    the range a difference of ``name`` can take."""
    if not d:
        return False
    lo, hi = difference_range(name)
    mde = d.get("mde80", math.nan)
    return bool(d["ci_low"] < lo or d["ci_high"] > hi or (math.isfinite(mde) and mde > hi))


def _diff(d: dict[str, Any] | None, name: str) -> tuple[str, str, str]:
    """``Δ [CI]``, ``p`` and ``MDE80`` cells of a paired difference of ``name`` values (dashes
    when absent). Interval ends past the range of such a difference are clipped to it and an
    MDE past it is shown as ``> range``, each marked :data:`CLIPPED`."""
    if not d:
        return "—", "—", "—"
    bounds = difference_range(name)
    lo, hi, cut_lo, cut_hi = clip_interval(d["ci_low"], d["ci_high"], bounds)
    ci = f"[{_f(lo)}{CLIPPED * cut_lo}, {_f(hi)}{CLIPPED * cut_hi}]"
    mde = d.get("mde80", math.nan)
    mde_cell = f"> {_f(bounds[1])}{CLIPPED}" if math.isfinite(mde) and mde > bounds[1] else None
    return f"{d['mean']:+.4g} {ci}", _f(d["p"], 3), mde_cell or _f(mde, 3)


def quantity_label(views: dict[str, Any]) -> str:
    """Readable name of the quantity the two views compare."""
    if views["quantity"] == "val_metric":
        return f"validation {views['quantity_name']}"
    return "validation loss in nats/token"


def format_steps_table(summary: dict[str, Any]) -> str:
    """Equal steps: the final metric (every run at the same step count S) paired vs softmax, and,
    when the curves hold another quantity (e.g. NMT loss), that quantity at step S too."""
    v = summary["views"]
    metric = summary["metric"]
    head = f"{metric} at step {v['step']}" if v["same_steps"] else f"final {metric}"
    extra = v["quantity"] != "val_metric"
    cols = [f"{head} (mean ± std)", "Δ vs softmax [95% CI]", "p", "MDE₈₀"]
    if extra:
        cols += [f"val loss at step {v['step']} (mean ± std)", "Δ [95% CI]", "p", "MDE₈₀"]
    lines = ["| variant | " + " | ".join(cols) + " |", "|" + " --- |" * (len(cols) + 1)]
    for r in summary["variants"]:
        cells = [
            r["label"],
            _pm(r["metric_mean"], r["metric_std"]),
            *_diff(r.get("vs_softmax"), metric),
        ]
        if extra and "at_step" in r:
            a = r["at_step"]
            cells += [_pm(a["mean"], a["std"]), *_diff(r.get("at_step_vs_softmax"), "loss")]
        elif extra:
            cells += ["n/a"] * 4
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def clock_noise(summary: dict[str, Any], row: dict[str, Any]) -> tuple[float, float] | None:
    """``(noise, cost)`` of an equal-time row vs softmax, both relative: ``noise`` the larger
    training-time spread between seeds (max - min over mean: the same computation) of the row's
    variant and of softmax, ``cost`` its budget-clock ms/step relative to softmax's minus 1.
    None for softmax itself, with a step budget, or when either figure is missing."""
    if row["label"] == "softmax" or summary["views"].get("clock") not in ("cpu", "wall"):
        return None
    base = next((r for r in summary["variants"] if r["label"] == "softmax"), None)
    if base is None:
        return None
    spreads = [x.get("time_spread_rel") for x in (row, base)]
    ms = [x.get("clock_ms_per_step") for x in (row, base)]
    if any(v is None or not math.isfinite(v) for v in spreads + ms) or not ms[1] > 0:
        return None
    return max(spreads), ms[0] / ms[1] - 1.0


def noisy(summary: dict[str, Any], row: dict[str, Any]) -> bool:
    """True when the row's clock noise is at least the cost difference its equal-time
    comparison rests on (:func:`clock_noise`)."""
    got = clock_noise(summary, row)
    return got is not None and got[0] >= abs(got[1])


def format_time_table(summary: dict[str, Any]) -> str | None:
    """Equal training time: the curve quantity at T (the smallest training time of all runs on
    the budget clock) paired vs softmax, with the steps each variant had done by T, and each
    row's clock noise against its per-step cost difference (``‡`` when the noise is larger)."""
    v = summary["views"]
    rows = [r for r in summary["variants"] if "at_time" in r]
    if v.get("time") is None or not rows:
        return None
    cost, cost_key = cost_column(summary)
    cols = [
        f"{v['quantity_name']} at {_f(v['time'])} s (mean ± std)",
        "Δ vs softmax [95% CI]",
        "p",
        "MDE₈₀",
        "steps done by then",
        f"total training time ({v['clock']} s)",
        cost,
        "clock noise / cost vs softmax",
    ]
    lines = ["| variant | " + " | ".join(cols) + " |", "|" + " --- |" * (len(cols) + 1)]
    for r in rows:
        a = r["at_time"]
        diff, p, mde = _diff(r.get("at_time_vs_softmax"), v["quantity_name"])
        got = clock_noise(summary, r)
        if got is None:
            sp = r.get("time_spread_rel")
            noise = f"{_pct(100 * sp)} %" if sp is not None and v["clock"] != "steps" else "—"
        else:
            flag = NOISY if noisy(summary, r) else ""
            noise = f"{_pct(100 * got[0])} % / {100 * got[1]:+.0f} %{flag}"
            p += flag
        cells = [r["label"], _pm(a["mean"], a["std"]), diff, p, mde]
        cells += [
            _f(r.get("steps_at_time"), 3),
            _f(r.get("train_time_mean"), 4),
            _f(r.get(cost_key), 3),
            noise,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def notes(summary: dict[str, Any]) -> list[str]:
    """Bullet lines saying which clock the ms/step figures use and, when a table carries them,
    what the :data:`CLIPPED` and :data:`NOISY` markers mean."""
    out = [f"- {cost_text(summary)}"]
    v = summary.get("views") or {}
    names = {
        "vs_softmax": summary["metric"],
        "curve_mean_vs_softmax": summary["metric"],
        "at_step_vs_softmax": "loss",
        "at_time_vs_softmax": v.get("quantity_name", summary["metric"]),
    }
    hit = sorted(
        {names[k] for r in summary["variants"] for k in names if _out_of_range(r.get(k), names[k])}
    )
    if hit:
        ranges = ", ".join(f"{n} in [{_f(lo)}, {_f(hi)}]" for n in hit for lo, hi in [
            difference_range(n)
        ])  # fmt: skip
        out.append(
            f"- {CLIPPED}: the Student-t interval (or the MDE₈₀) reaches past the values a "
            f"difference can take ({ranges}); it is shown clipped to that range, the raw "
            "figures are in results.json. With this few seeds and this much spread the test "
            "cannot resolve the difference: read such a row as no evidence either way."
        )
    flagged = [r["label"] for r in summary["variants"] if "at_time" in r and noisy(summary, r)]
    if flagged:
        out.append(
            f"- {NOISY} (equal training time: {', '.join(flagged)}): the clock's noise (the "
            "larger spread of total training time between the seeds of this variant or of "
            "softmax, the same computation) is at least this variant's per-step cost difference "
            "to softmax, on which the equal-time comparison rests; its Δ and p may measure the "
            "clock (e.g. a busy machine) rather than the variant."
        )
    return out


def _pct(x: float) -> str:
    """A percentage with two significant digits, never in exponent notation."""
    return f"{x:.0f}" if abs(x) >= 10 else f"{x:.2g}"


def _span(xs: list[float], ref: float | None) -> str:
    """``min–max`` of ``xs``, and as % of ``|ref|`` when ``ref`` is a nonzero number."""
    lo, hi = min(xs), max(xs)
    text = _f(lo, 3) if lo == hi else f"{_f(lo, 3)}–{_f(hi, 3)}"
    if ref is not None and math.isfinite(ref) and ref != 0:
        a, b = (_pct(100 * x / abs(ref)) for x in (lo, hi))
        text += f" ({a} % of softmax)" if lo == hi else f" ({a}–{b} % of softmax)"
    return text


def power_statement(summary: dict[str, Any]) -> str | None:
    """One computed paragraph: with n paired seeds, the smallest differences the paired tests of
    both views can resolve (95 % CI half-width; MDE at 80 % power from the observed paired std),
    as absolute values and relative to softmax's mean."""
    v = summary["views"]
    base = next((r for r in summary["variants"] if r["label"] == "softmax"), None)
    parts = []
    tests = [
        ("vs_softmax", summary["metric"], base and base["metric_mean"], "equal steps"),
        (
            "at_time_vs_softmax",
            v["quantity_name"],
            base and base.get("at_time", {}).get("mean"),
            "equal training time",
        ),
    ]
    if v["quantity"] != "val_metric":
        tests.insert(
            1,
            (
                "at_step_vs_softmax",
                "loss",
                base and base.get("at_step", {}).get("mean"),
                "equal steps",
            ),
        )
    ns = set()
    for key, name, ref, view in tests:
        ds = [r[key] for r in summary["variants"] if r.get(key)]
        half = [d["half_width"] for d in ds if math.isfinite(d.get("half_width", math.nan))]
        mde = [d["mde80"] for d in ds if math.isfinite(d.get("mde80", math.nan))]
        ns.update(d["n"] for d in ds)
        if not half:
            continue

        part = f"{name} at {view}: CI half-width {_span(half, ref)}, MDE₈₀ {_span(mde, ref)}"
        width = difference_range(name)[1]
        if math.isfinite(width) and max(half + mde) > width:
            part += (
                f" (beyond {_f(width)}, the largest difference {name} can show: rows marked "
                f"{CLIPPED} cannot resolve any difference)"
            )
        parts.append(part)
    if not parts:
        return None
    n = "/".join(str(x) for x in sorted(ns))
    return (
        f"Power: with n = {n} paired seeds the smallest mean difference a row's test calls "
        "significant at 5 % is its 95 % CI half-width (t quantile × paired std / √n), and the "
        "true difference it would detect with 80 % power (MDE₈₀: two-sided paired t-test, "
        "noncentral t, taking the observed paired std as the true one) is larger. Over the rows: "
        + "; ".join(parts)
        + ". Differences smaller than these are not resolved by this grid."
    )


def format_speed_table(summary: dict[str, Any]) -> str | None:
    """Learning speed: mean validation metric over all evaluation points, paired vs softmax."""
    rows = [r for r in summary["variants"] if "curve_mean_mean" in r]
    if not rows:
        return None
    metric = summary["metric"]
    lines = [
        f"| variant | mean {metric} over the curve (mean ± std) | Δ vs softmax [95% CI] | p |",
        "| --- | --- | --- | --- |",
    ]
    for r in rows:
        diff, p, _ = _diff(r.get("curve_mean_vs_softmax"), metric)
        lines.append(
            f"| {r['label']} | {_pm(r['curve_mean_mean'], r['curve_mean_std'])} | {diff} | {p} |"
        )
    return "\n".join(lines)


def label_styles(results: dict[str, Any]) -> dict[str, dict]:
    """``plot`` keywords per variant label: the attention variant's fixed colour in every plot
    (:func:`gpam.analysis.plots.series_styles`; e.g. softmax-matched or a second daGPAM setting
    share their variant's colour with another line style and marker)."""
    from gpam.analysis.plots import series_styles

    labels = [r["label"] for r in results["summary"]["variants"]]
    attention = {r["label"]: r.get("attention", r["label"]) for r in results["runs"].values()}
    styles = series_styles([attention.get(lab, lab) for lab in labels])
    return dict(zip(labels, styles))


def plot_curves(results: dict[str, Any], out: Path) -> list[Path]:
    """``curves_metric.png`` and ``curves_loss.png``: validation metric / training loss vs step,
    mean over seeds per variant (shaded: min-max over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from gpam.analysis.plots import log_y

    summary = results["summary"]
    labels = [r["label"] for r in summary["variants"]]
    runs = [r for r in results["runs"].values() if r.get("status") == "done"]
    paths = []
    has_metric = all("val_metric" in p for r in runs for p in r["curve"])
    first = (
        ("val_metric", f"validation {summary['metric']}", "curves_metric.png", None)
        if has_metric
        else ("val_loss", "validation loss (nats/token)", "curves_metric.png", True)
    )
    styles = label_styles(results)
    for key, ylabel, fname, logy in (
        first,
        ("train_loss", "training loss (cross-entropy, nats)", "curves_loss.png", True),
    ):
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        drawn: list[float] = []
        for lab in labels:
            curves = [r["curve"] for r in runs if r["label"] == lab and r["curve"]]
            if not curves:
                continue
            n = min(len(c) for c in curves)
            steps = np.array([c[i]["step"] for i in range(n) for c in curves[:1]])
            ys = np.array([[c[i][key] for i in range(n)] for c in curves], dtype=float)
            ax.plot(steps, np.nanmean(ys, 0), label=lab, ms=3, **styles[lab])
            ax.fill_between(
                steps, np.nanmin(ys, 0), np.nanmax(ys, 0), alpha=0.15, color=styles[lab]["color"]
            )
            drawn += [float(y) for y in ys.ravel()]
        ax.set_xlabel("training step")
        ax.set_ylabel(ylabel)
        if key == "val_metric" and summary["metric"] == "perplexity":
            logy = True
        if logy:
            log_y(ax, drawn)
        ax.set_title(f"{results['task']['task']}: {ylabel} (mean over seeds, band = min-max)")
        ax.title.set_fontsize(9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out / fname
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    time_plot = plot_time_curves(results, out)
    if time_plot is not None:
        paths.append(time_plot)
    fig, ax = plt.subplots(figsize=(5.6, 4.2))
    for lab in labels:
        pts = [(r["rank_collapse"], r["final_metric"]) for r in runs if r["label"] == lab]
        if pts:
            st = styles[lab]
            ax.scatter(*zip(*pts), label=lab, s=22, color=st["color"], marker=st["marker"])
    ax.set_xlabel("relative residual ||X - 1x̄ᵀ||_F / ||X||_F of final hidden states")
    ax.set_ylabel(f"final validation {summary['metric']}")
    ax.set_title(
        "final residual (1 = spread, 0 = collapsed) vs final quality (one point per run)",
        fontsize=9,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "rank_vs_metric.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)
    return paths


def _spread_text(v: dict[str, Any]) -> str:
    """How much the clock moved between seeds of one variant (the same computation)."""
    sp = v.get("time_spread")
    if not sp or v["clock"] == "steps":
        return ""
    return (
        f" The clock's own noise: the total training time of the seeds of one variant (the same "
        f"computation) differs by up to {100 * sp['rel']:.1f} % of their mean ({sp['label']})."
    )


def _views_text(summary: dict[str, Any]) -> list[str]:
    """The two views of the same runs (tables and their explanation) for ``report.md``."""
    v = summary.get("views")
    if not v or v.get("step") is None:
        return []
    q = quantity_label(v)
    better = "higher" if v["quantity_higher_is_better"] else "lower"
    out = [
        "## Equal steps",
        "",
        (
            f"Every run trained {v['step']} steps; "
            if v["same_steps"]
            else f"Runs stopped at different step counts (the smallest is {v['step']}): the "
            f"{summary['metric']} column is each run's final one, the other columns are read at "
            f"step {v['step']}; "
        )
        + "paired vs softmax as above. MDE₈₀: the smallest true difference this test detects "
        "with 80 % power (from the observed paired std, see Power).",
        "",
        format_steps_table(summary),
        "",
    ]
    if v["quantity"] != "val_metric":
        out += [
            f"The {summary['metric']} is computed only at the end of a run, so the curves (and "
            f"the equal-time view) use the {q} ({better} is better) at every evaluation point.",
            "",
        ]
    time_table = format_time_table(summary)
    if time_table:
        clock = v["clock"]
        what = {
            "cpu": "process CPU seconds of training",
            "wall": "wall-clock seconds of training",
            "steps": "optimizer steps (so this view equals the equal-steps view)",
        }.get(clock, f"{clock} clock")
        out += [
            f"## Equal training time (T = {_f(v['time'])} s, clock: {clock})",
            "",
            f"Each run's {q} ({better} is better) read at T = {_f(v['time'])} s on the budget "
            f"clock ({what}, validation excluded): T is the smallest total training time of all "
            "runs of the grid, so no curve is extrapolated; between evaluation points the value "
            "is interpolated linearly in time. Paired vs softmax by seed as above."
            + _spread_text(v),
            "",
            time_table,
            "",
        ]
    power = power_statement(summary)
    if power:
        out += [power, ""]
    return out


def time_grid_curves(
    runs: list[dict[str, Any]], key: str, n_points: int = 60
) -> tuple[Any, Any] | None:
    """Curves of ``key`` against training time of the seeds in ``runs``, interpolated onto one
    grid of ``n_points`` times spanning the range every seed covers (no extrapolation):
    ``(times (n_points,), values (n_seeds, n_points))``, or None when the seeds share no range."""
    import numpy as np

    curves = []
    for r in runs:
        pts = [p for p in r.get("curve", []) if key in p and math.isfinite(p["elapsed_s"])]
        if pts:
            curves.append(([p["elapsed_s"] for p in pts], [p[key] for p in pts]))
    if not curves:
        return None
    lo, hi = max(c[0][0] for c in curves), min(c[0][-1] for c in curves)
    if not hi > lo:
        return None
    ts = np.linspace(lo, hi, n_points)
    return ts, np.array([np.interp(ts, x, y) for x, y in curves], dtype=float)


def plot_time_curves(results: dict[str, Any], out: Path) -> Path | None:
    """``curves_time.png``: the equal-time view's quantity against training time on the budget
    clock, mean over seeds (band = min-max), with T marked; None without timed curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gpam.analysis.plots import log_y

    summary = results["summary"]
    v = summary.get("views")
    if not v or v.get("time") is None:
        return None
    key = "val_metric" if v["quantity"] == "val_metric" else "val_loss"
    runs = [r for r in results["runs"].values() if r.get("status") == "done"]
    styles = label_styles(results)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    drawn: list[float] = []
    for row in summary["variants"]:
        got = time_grid_curves([r for r in runs if r["label"] == row["label"]], key)
        if got is None:
            continue
        ts, ys = got
        st = {k: v for k, v in styles[row["label"]].items() if k != "marker"}
        ax.plot(ts, ys.mean(0), label=row["label"], **st)
        ax.fill_between(ts, ys.min(0), ys.max(0), alpha=0.15, color=st["color"])
        drawn += [float(y) for y in ys.ravel()]
    if not drawn:
        plt.close(fig)
        return None
    ax.axvline(v["time"], color="k", ls="--", lw=0.8, label=f"T = {_f(v['time'], 4)} s")
    ax.set_xlabel(f"training time ({v['clock']} s, validation excluded)")
    ylabel = quantity_label(v)
    ax.set_ylabel(ylabel)
    if v["quantity"] != "val_metric" or summary["metric"] == "perplexity":
        log_y(ax, drawn)
    ax.set_title(
        f"{results['task']['task']}: {ylabel} vs training time\n(mean over seeds, band = min-max)",
        fontsize=9,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "curves_time.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _matched_target(label: str) -> str:
    """Whose parameter count a ``softmax-matched[-SETTING]`` row matches."""
    rest = label[len("softmax-matched") :].lstrip("-")
    return f"{rest}'s" if rest else "that of the grid's larger setting(s)"


def _lr_text(lr: float, chosen: dict[str, float] | None) -> str:
    """The report's learning rate: the one rate, or each setting's chosen one (``--lrs``)."""
    if not chosen:
        return f"{lr:g}"
    per = ", ".join(f"{lab} {x:g}" for lab, x in chosen.items())
    return f"chosen per setting on validation ({per}; see Learning rate per setting)"


def _split(results: dict[str, Any]) -> str:
    """Where the final metric was measured: ``test`` for runs scored on a test split."""
    runs = results.get("runs", {}).values()
    return "test" if any("val_final_metric" in r for r in runs) else "validation"


def write_report(results: dict[str, Any], out: str | Path) -> Path:
    """Write ``report.md`` (table, settings, correlation, plot links) and the plots into ``out``."""
    out = Path(out)
    summary = results["summary"]
    cfg = results["config"]
    tr = cfg["train"]
    plots = plot_curves(results, out)
    corr = summary["rank_collapse_vs_metric"]
    better = "higher" if summary["higher_is_better"] else "lower"
    clock = tr.get("budget_clock", "wall")
    unit = "steps" if clock == "steps" else f"s of {clock}-clock training time"
    budget = (
        f"{tr['time_budget']:g} {unit} per run, validation excluded (at most {tr['steps']} steps)"
        if tr.get("time_budget")
        else f"{tr['steps']} steps per run"
    )
    model = "Seq2SeqTransformer" if results["kind"] == "nmt" else "TransformerLM"
    text = [
        f"# gpam compare {results['kind']}: {results['task']['task']}",
        "",
        "Task: " + ", ".join(f"{k}={v}" for k, v in results["task"].items() if k != "task") + "  ",
        f"Model: {model} d_model={cfg['d_model']}, n_layers={cfg['n_layers']}, "
        f"n_heads={cfg['n_heads']}, daGPAM lam_neg={cfg['lam_negs']}  ",
        f"Budget: {budget}, "
        + ("batches of --max-tokens" if results["kind"] == "nmt" else f"batch {tr['batch_size']}")
        + f", lr {_lr_text(tr['lr'], summary.get('lrs'))} (warmup over the first "
        f"{tr.get('warmup', 0.1):g} of the budget, "
        "then cosine), weight decay "
        f"{tr.get('weight_decay', 0.01):g}, device {tr['device']}; "
        f"seeds {cfg['seeds']}; runs done {summary['n_runs_done']}/{summary['n_runs_planned']}.",
        "",
        f"Final {_split(results)} **{summary['metric']}** ({better} is better). Δ: paired "
        "difference "
        "to softmax over seeds (same seed = same initial shared parameters and data order), 95 % "
        "Student-t interval, p from a two-sided paired t-test (scipy.stats.ttest_rel). "
        "Overhead: parameters relative to the softmax model. Peak MB: see memory method "
        f"below. {RESIDUAL[0].upper()}{RESIDUAL[1:]}: relative Frobenius residual "
        "||X - 1x̄ᵀ||_F / ||X||_F of the final block's hidden states on a validation batch, the "
        "rank-collapse measure (1 = tokens spread, 0 = collapsed to one vector).",
        "",
        format_table(summary),
        "",
        *notes(summary),
        "",
    ]
    text += _views_text(summary)
    text += pairing_text(results)
    speed = format_speed_table(summary)
    if speed:
        text += [
            "Learning speed at the same budget: the validation metric averaged over every "
            "evaluation point of the run (area under the learning curve / its length), paired "
            "across seeds as above.",
            "",
            speed,
            "",
        ]
    text += [
        f"Final residual (1 = spread, 0 = collapsed) vs final {summary['metric']} across "
        f"{corr['n']} runs: Pearson r = "
        f"{_f(corr['pearson_r'], 3)} (p = {_f(corr['pearson_p'], 3)}), Spearman ρ = "
        f"{_f(corr['spearman_r'], 3)} (p = {_f(corr['spearman_p'], 3)}).",
        "",
    ]
    widths = {r["label"]: r["model_config"]["d_ff"] for r in results["runs"].values()}
    for lab in sorted(w for w in widths if w.startswith("softmax-matched")):
        text.append(
            f"{lab}: softmax with feed-forward width d_ff={widths[lab]} "
            f"(instead of {widths.get('softmax', 'n/a')}) so that its parameter count reaches "
            f"{_matched_target(lab)} (extra heads add no parameters; d_model moves in much "
            "coarser steps)."
        )
        text.append("")
    if "softmax-2h" in widths:
        text += [
            "softmax-2h: softmax with twice the heads at the same width (same parameters as "
            "softmax, twice the attention maps: daGPAM's two maps per head without negative "
            "weights).",
            "",
        ]
    methods = {r.get("memory_method") for r in results["runs"].values() if r.get("memory_method")}
    if methods:
        text.append(f"Memory method: {', '.join(sorted(methods))}.")
        text.append("")
    text += [f"![{p.stem}]({p.name})" for p in plots]
    text.append("")
    path = out / "report.md"
    atomic_write_text(path, "\n".join(text))
    return path
