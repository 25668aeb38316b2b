"""``report.md`` and plots of a comparison (learning curves, rank collapse vs final metric)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from gpam._io import atomic_write_text


def _f(x: Any, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}g}" if isinstance(x, float) else str(x)


def _pm(mean: float, std: float, digits: int = 4) -> str:
    return _f(mean, digits) if not math.isfinite(std) else f"{_f(mean, digits)} ± {_f(std, 2)}"


def format_table(summary: dict[str, Any]) -> str:
    """The main comparison table as markdown (one row per variant label)."""
    metric = summary["metric"]
    lines = [
        f"| variant | {metric} (mean ± std) | n | Δ vs softmax [95% CI] | p | params | "
        "overhead | ms/step | peak MB | rank collapse |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in summary["variants"]:
        d = r.get("vs_softmax")
        if d:
            diff = f"{d['mean']:+.4g} [{_f(d['ci_low'])}, {_f(d['ci_high'])}]"
            p = _f(d["p"], 3)
        else:
            diff, p = "—", "—"
        lines.append(
            f"| {r['label']} | {_pm(r['metric_mean'], r['metric_std'])} | {r['metric_n']} | {diff} "
            f"| {p} | {r['params']:,} | {r['overhead_pct']:+.2f}% | {_f(r['time_per_step_ms'], 3)} "
            f"| {_f(r['peak_memory_mb'], 3)} | {_f(r['rank_collapse'], 3)} |"
        )
    return "\n".join(lines)


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
        d = r.get("curve_mean_vs_softmax")
        diff = f"{d['mean']:+.4g} [{_f(d['ci_low'])}, {_f(d['ci_high'])}]" if d else "—"
        p = _f(d["p"], 3) if d else "—"
        lines.append(
            f"| {r['label']} | {_pm(r['curve_mean_mean'], r['curve_mean_std'])} | {diff} | {p} |"
        )
    return "\n".join(lines)


def plot_curves(results: dict[str, Any], out: Path) -> list[Path]:
    """``curves_metric.png`` and ``curves_loss.png``: validation metric / training loss vs step,
    mean over seeds per variant (shaded: min-max over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

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
    for key, ylabel, fname, logy in (
        first,
        ("train_loss", "training loss (cross-entropy, nats)", "curves_loss.png", True),
    ):
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for lab in labels:
            curves = [r["curve"] for r in runs if r["label"] == lab and r["curve"]]
            if not curves:
                continue
            n = min(len(c) for c in curves)
            steps = np.array([c[i]["step"] for i in range(n) for c in curves[:1]])
            ys = np.array([[c[i][key] for i in range(n)] for c in curves], dtype=float)
            ax.plot(steps, np.nanmean(ys, 0), label=lab, marker="o", ms=3)
            ax.fill_between(steps, np.nanmin(ys, 0), np.nanmax(ys, 0), alpha=0.15)
        ax.set_xlabel("training step")
        ax.set_ylabel(ylabel)
        if key == "val_metric" and summary["metric"] == "perplexity":
            logy = True
        if logy:
            ax.set_yscale("log")
        ax.set_title(f"{results['task']['task']}: {ylabel} (mean over seeds, band = min-max)")
        ax.title.set_fontsize(9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out / fname
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    fig, ax = plt.subplots(figsize=(5.6, 4.2))
    for lab in labels:
        pts = [(r["rank_collapse"], r["final_metric"]) for r in runs if r["label"] == lab]
        if pts:
            ax.scatter(*zip(*pts), label=lab, s=22)
    ax.set_xlabel("relative residual ||X - 1x̄ᵀ||_F / ||X||_F of final hidden states")
    ax.set_ylabel(f"final validation {summary['metric']}")
    ax.set_title("rank collapse vs final quality (one point per run)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "rank_vs_metric.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)
    return paths


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
        + f", lr {tr['lr']:g} (warmup over the first {tr.get('warmup', 0.1):g} of the budget, "
        "then cosine), weight decay "
        f"{tr.get('weight_decay', 0.01):g}, device {tr['device']}; "
        f"seeds {cfg['seeds']}; runs done {summary['n_runs_done']}/{summary['n_runs_planned']}.",
        "",
        f"Final validation **{summary['metric']}** ({better} is better). Δ: paired difference "
        "to softmax over seeds (same seed = same initialisation stream and data order), 95 % "
        "Student-t interval, p from a two-sided paired t-test (scipy.stats.ttest_rel). "
        "Overhead: parameters relative to the softmax model. ms/step: median training step. "
        "Peak MB: see memory method below. Rank collapse: relative Frobenius residual of the "
        "final block's hidden states on a validation batch (1 = tokens spread, 0 = collapsed).",
        "",
        format_table(summary),
        "",
    ]
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
        f"Rank collapse vs final {summary['metric']} across {corr['n']} runs: Pearson r = "
        f"{_f(corr['pearson_r'], 3)} (p = {_f(corr['pearson_p'], 3)}), Spearman ρ = "
        f"{_f(corr['spearman_r'], 3)} (p = {_f(corr['spearman_p'], 3)}).",
        "",
    ]
    widths = {r["label"]: r["model_config"]["d_ff"] for r in results["runs"].values()}
    if "softmax-matched" in widths:
        text.append(
            f"softmax-matched: softmax with feed-forward width d_ff={widths['softmax-matched']} "
            f"(instead of {widths.get('softmax', 'n/a')}) so that its parameter count matches "
            "daGPAM's (extra heads add no parameters; d_model moves in much coarser steps)."
        )
        text.append("")
    methods = {r.get("memory_method") for r in results["runs"].values() if r.get("memory_method")}
    if methods:
        text.append(f"Memory method: {', '.join(sorted(methods))}.")
        text.append("")
    text += [f"![{p.stem}]({p.name})" for p in plots]
    text.append("")
    path = out / "report.md"
    atomic_write_text(path, "\n".join(text))
    return path
