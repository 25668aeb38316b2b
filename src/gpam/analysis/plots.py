"""Matplotlib (Agg) figures: labelled axes, log-scale y where values span decades."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from gpam._io import atomic_write_bytes  # noqa: E402

FLOOR = 1e-18  # values below this are drawn at this level on log axes (exact zeros included)


def _save(fig, path: Path) -> Path:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def _positive(values: Sequence[float | None]) -> list[float]:
    return [max(v, FLOOR) if v is not None and math.isfinite(v) else math.nan for v in values]


def spans_decades(values: Sequence[float | None], decades: float = 1.5) -> bool:
    """True if the positive finite values span more than ``decades`` powers of ten (or hit 0)."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return False
    if min(vals) <= 0:
        return True
    return math.log10(max(vals) / min(vals)) > decades


def log_y(ax, values: Sequence[float | None] = ()) -> None:
    """Log-scale y axis; minor tick labels only when ``values`` span under two decades."""
    from matplotlib.ticker import LogFormatterSciNotation, NullFormatter

    ax.set_yscale("log")
    if spans_decades(values, decades=2.0) or not values:
        ax.yaxis.set_minor_formatter(NullFormatter())
    else:
        ax.yaxis.set_minor_formatter(
            LogFormatterSciNotation(labelOnlyBase=False, minor_thresholds=(2, 0.5))
        )


def residual_curves(
    results: Sequence[dict],
    path: Path,
    *,
    title: str,
    label_key: str = "label",
    eps: float | None = None,
) -> Path:
    """Two panels (relative Frobenius, relative composite residual) vs layer, one line per result.

    Lines are the mean over trials; the shaded band spans the smallest and largest trial.
    ``eps`` draws the dtype's machine epsilon as a dotted line (the numerical floor).
    """
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharex=True)
    keys = (
        ("residual_fro", "||res(X)||_F / ||X||_F"),
        ("residual_composite", "||res(X)||_1,inf / ||X||_1,inf"),
    )
    for ax, (key, ylabel) in zip(axes, keys):
        every = []
        for r in results:
            mean = r[f"{key}_mean"]
            every.extend(mean)
            (line,) = ax.plot(r["layers"], _positive(mean), marker="o", ms=3, label=r[label_key])
            trials = r.get(f"{key}_trials")
            if trials and len(trials) > 1:
                cols = list(zip(*trials))
                lo = _positive([min((v for v in c if v is not None), default=None) for c in cols])
                hi = _positive([max((v for v in c if v is not None), default=None) for c in cols])
                ax.fill_between(r["layers"], lo, hi, color=line.get_color(), alpha=0.15)
        if spans_decades(every):
            log_y(ax)
            if eps is not None:
                ax.axhline(eps, color="grey", ls=":", lw=1, label="machine epsilon")
        ax.set_xlabel("layer (0 = input)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7, loc="best")
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def gradient_curves(runs: Sequence[dict], key: str, path: Path, *, ylabel: str, title: str) -> Path:
    """One panel per layer: ``key`` per training step, one line per variant run."""
    n_layers = max(len(r["layers"]) for r in runs)
    fig, axes = plt.subplots(1, n_layers, figsize=(4 * n_layers, 3.8), squeeze=False)
    for li in range(n_layers):
        ax = axes[0][li]
        every = []
        for r in runs:
            if li >= len(r["layers"]):
                continue
            series = r["layers"][li].get(key)
            if series is None:
                continue
            every.extend(series)
            ax.plot(r["steps"], _positive(series), lw=1, label=r["label"])
        if spans_decades(every):
            log_y(ax, every)
        ax.set_xlabel("training step")
        if li == 0:
            ax.set_ylabel(ylabel)
        ax.set_title(f"layer {li}")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="best")
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def loss_curves(runs: Sequence[dict], path: Path) -> Path:
    """Training loss per step, one line per variant run."""
    fig, ax = plt.subplots(figsize=(6, 4))
    every = []
    for r in runs:
        every.extend(r["loss"])
        ax.plot(r["steps"], _positive(r["loss"]), lw=1, label=r["label"])
    if spans_decades(every):
        log_y(ax, every)
    ax.set_xlabel("training step")
    ax.set_ylabel("training loss (cross-entropy, nats)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("training loss")
    return _save(fig, path)
