"""Matplotlib (Agg) figures: labelled axes, log-scale y where values span decades (with
readable tick labels however few decades), one fixed colour per attention variant."""

from __future__ import annotations

import math
import zlib
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


# One colour per variant in every plot (matplotlib's tab10 hues, each used once); a name not
# listed here (a variant added later) gets one of FALLBACK_COLOURS, none of which is used above.
VARIANT_COLOURS: dict[str, str] = {
    "softmax": "#1f77b4",  # blue
    "dagpam": "#d62728",  # red
    "centered": "#2ca02c",  # green
    "diff": "#ff7f0e",  # orange
    "diff2": "#8c564b",  # brown
    "cog": "#9467bd",  # purple
    "coda": "#e377c2",  # pink
    "sigmoid": "#7f7f7f",  # grey
    "gated": "#17becf",  # cyan
}
FALLBACK_COLOURS = ("#bcbd22", "#000000", "#6b8e23", "#8b008b", "#00008b", "#b8860b")
LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v")


def variant_colour(variant: str) -> str:
    """The fixed colour of ``variant`` (:data:`VARIANT_COLOURS`); an unknown name gets one of
    :data:`FALLBACK_COLOURS`, the same one in every plot (chosen by a checksum of the name)."""
    if variant in VARIANT_COLOURS:
        return VARIANT_COLOURS[variant]
    return FALLBACK_COLOURS[zlib.crc32(variant.encode()) % len(FALLBACK_COLOURS)]


def series_styles(variants: Sequence[str]) -> list[dict]:
    """``plot`` keywords (``color``, ``ls``, ``marker``) for series of the given variants, in
    order: the variant's colour, and the k-th series of one variant (e.g. several lam_neg) a
    different line style and marker. When every series is the same variant (a sweep of one
    variant's settings) colours tell the settings apart instead (matplotlib's cycle)."""
    if len(variants) > 1 and len(set(variants)) == 1:
        cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        return [
            {"color": cycle[k % len(cycle)], "ls": LINESTYLES[k // len(cycle) % 4], "marker": "o"}
            for k in range(len(variants))
        ]
    seen: dict[str, int] = {}
    out = []
    for v in variants:
        k = seen[v] = seen.get(v, -1) + 1
        out.append(
            {
                "color": variant_colour(v),
                "ls": LINESTYLES[k % len(LINESTYLES)],
                "marker": MARKERS[k // len(LINESTYLES) % len(MARKERS)],
            }
        )
    return out


def _line(style: dict) -> dict:
    """``style`` without its marker (for per-step curves, where markers would crowd)."""
    return {k: v for k, v in style.items() if k != "marker"}


def _plain(y: float, _pos: int | None = None) -> str:
    """A log-axis tick label as a plain number (``0.5``, ``2``, ``3e-05``)."""
    return f"{y:.3g}"


def log_ticks(axis, values: Sequence[float | None] = ()) -> None:
    """Readable ticks on a log-scale ``axis`` (``ax.xaxis`` / ``ax.yaxis``): over more than
    2.5 decades of ``values`` one labelled tick per decade; over fewer (where a decade tick
    alone gives one label or none) labelled ticks at 1, 2, 5 (or finer) times powers of ten,
    as plain numbers."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    vals = [v for v in values if v is not None and math.isfinite(v) and v > 0]
    span = math.log10(max(vals) / min(vals)) if vals else math.inf
    axis.set_minor_formatter(NullFormatter())
    if span > 2.5:
        return
    if span > 1.0:
        subs = (1.0, 2.0, 5.0)
    elif span > 0.4:
        subs = (1.0, 1.5, 2.0, 3.0, 5.0, 7.0)
    else:
        subs = tuple(1.0 + 0.5 * k for k in range(18))
    axis.set_major_locator(LogLocator(base=10.0, subs=subs, numticks=30))
    axis.set_major_formatter(FuncFormatter(_plain))


def plain_labels(axis) -> None:
    """Label ``axis``'s major ticks as plain numbers (``0.5``, ``2``) instead of powers."""
    from matplotlib.ticker import FuncFormatter

    axis.set_major_formatter(FuncFormatter(_plain))


def log_y(ax, values: Sequence[float | None] = ()) -> None:
    """Log-scale y axis with readable tick labels for the range of ``values``
    (:func:`log_ticks`)."""
    ax.set_yscale("log")
    log_ticks(ax.yaxis, values)


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
    styles = series_styles([r.get("variant", r[label_key]) for r in results])
    for ax, (key, ylabel) in zip(axes, keys):
        every = []
        for r, style in zip(results, styles):
            mean = r[f"{key}_mean"]
            every.extend(mean)
            (line,) = ax.plot(r["layers"], _positive(mean), ms=3, label=r[label_key], **style)
            trials = r.get(f"{key}_trials")
            if trials and len(trials) > 1:
                cols = list(zip(*trials))
                lo = _positive([min((v for v in c if v is not None), default=None) for c in cols])
                hi = _positive([max((v for v in c if v is not None), default=None) for c in cols])
                ax.fill_between(r["layers"], lo, hi, color=line.get_color(), alpha=0.15)
        if spans_decades(every):
            log_y(ax, every)
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
    styles = series_styles([r.get("variant", r["label"]) for r in runs])
    for li in range(n_layers):
        ax = axes[0][li]
        every = []
        for r, style in zip(runs, styles):
            if li >= len(r["layers"]):
                continue
            series = r["layers"][li].get(key)
            if series is None:
                continue
            every.extend(series)
            ax.plot(r["steps"], _positive(series), lw=1, label=r["label"], **_line(style))
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
    styles = series_styles([r.get("variant", r["label"]) for r in runs])
    for r, style in zip(runs, styles):
        every.extend(r["loss"])
        ax.plot(r["steps"], _positive(r["loss"]), lw=1, label=r["label"], **_line(style))
    if spans_decades(every):
        log_y(ax, every)
    ax.set_xlabel("training step")
    ax.set_ylabel("training loss (cross-entropy, nats)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("training loss")
    return _save(fig, path)
