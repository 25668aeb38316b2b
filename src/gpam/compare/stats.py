"""Statistics for comparison reports: mean +- std, paired differences with a 95 % CI and p-value,
the power of such a test, and learning curves read at a common step or training time.

Paired across seeds: run ``i`` of a variant and run ``i`` of the baseline share the seed (the same
parameters at start wherever they share them, ``gpam.models.paired_init_``, and the same
training data order), so the test is ``scipy.stats.ttest_rel``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import integrate, optimize, stats


def _clean(values: Sequence[float], name: str) -> np.ndarray:
    arr = np.asarray(list(values), dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a flat sequence of numbers")
    return arr


def summarize(values: Sequence[float]) -> dict[str, float | int]:
    """``{"n", "mean", "std"}`` of ``values`` (sample std, ``ddof=1``; NaN when n < 2)."""
    arr = _clean(values, "values")
    n = int(arr.size)
    mean = float(arr.mean()) if n else math.nan
    std = float(arr.std(ddof=1)) if n > 1 else math.nan
    return {"n": n, "mean": mean, "std": std}


def paired_difference(
    variant: Sequence[float], baseline: Sequence[float], confidence: float = 0.95
) -> dict[str, float | int]:
    """Paired difference ``variant - baseline`` across seeds.

    Returns ``n``, ``mean`` (of the differences), ``std``, ``ci_low`` / ``ci_high`` (Student-t
    interval at ``confidence``), ``half_width`` (half its width: the smallest mean difference
    this test calls significant at ``1 - confidence`` given the observed spread), ``mde80`` (the
    true difference it would detect with 80 % power, :func:`min_detectable_effect`), ``t`` and
    ``p`` (two-sided ``scipy.stats.ttest_rel``). With fewer than two pairs, or differences that
    are all equal, the interval/test/power figures are NaN (not computable).
    """
    a, b = _clean(variant, "variant"), _clean(baseline, "baseline")
    if a.size != b.size:
        raise ValueError(
            f"variant and baseline must have the same length, got {a.size} != {b.size}"
        )
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    d = a - b
    n = int(d.size)
    out: dict[str, float | int] = {
        "n": n,
        "mean": float(d.mean()) if n else math.nan,
        "std": math.nan,
        "ci_low": math.nan,
        "ci_high": math.nan,
        "half_width": math.nan,
        "mde80": math.nan,
        "t": math.nan,
        "p": math.nan,
    }
    if n < 2:
        return out
    sd = float(d.std(ddof=1))
    out["std"] = sd
    if sd <= 1e-12 * max(1.0, abs(out["mean"])):  # all equal (up to round-off): no test
        return out
    half = ci_half_width(sd, n, confidence)
    res = stats.ttest_rel(a, b)
    out.update(
        ci_low=out["mean"] - half,
        ci_high=out["mean"] + half,
        half_width=half,
        mde80=min_detectable_effect(sd, n, alpha=1 - confidence, power=0.8),
        t=float(res.statistic),
        p=float(res.pvalue),
    )
    return out


def ci_half_width(std: float, n: int, confidence: float = 0.95) -> float:
    """Half-width ``t_{(1+confidence)/2, n-1} * std / sqrt(n)`` of the Student-t interval of a
    mean of ``n`` values with sample std ``std`` (NaN when n < 2)."""
    if n < 2 or not math.isfinite(std):
        return math.nan
    return float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)


def _phi(x: float) -> float:
    """Standard normal CDF."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def min_detectable_effect(std: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest true mean difference a two-sided paired t-test on ``n`` pairs detects with
    probability ``power`` at level ``alpha``, if the differences' std were ``std``.

    Exact for normal differences: solves ``P(|T| > t_{1-alpha/2, n-1}) = power`` for ``T``
    noncentral t with ``n - 1`` degrees of freedom and noncentrality ``delta sqrt(n) / std``
    (``scipy.stats.nct``; where it returns NaN, e.g. n = 2, the probability is integrated over
    the chi-square of the variance estimate). NaN when n < 2 or ``std`` is not a
    positive number. With few pairs the observed ``std`` is itself uncertain, so this is an
    estimate of the test's resolution, not a guarantee.
    """
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ValueError(f"alpha and power must be in (0, 1), got {alpha}, {power}")
    if n < 2 or not (math.isfinite(std) and std > 0):
        return math.nan
    df = n - 1
    crit = float(stats.t.ppf(1 - alpha / 2, df))

    def reach(nc: float) -> float:
        p = float(stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc))
        if not math.isfinite(p):  # nct fails for tiny df and large nc: integrate it directly
            # over w = sqrt(variance estimate * df) ~ chi(df), smooth at 0 unlike chi-square
            lo_w, hi_w = float(stats.chi.ppf(1e-12, df)), float(stats.chi.isf(1e-12, df))

            def inner(w: float) -> float:
                c = crit * w / math.sqrt(df)
                return (_phi(nc - c) + _phi(-nc - c)) * float(stats.chi.pdf(w, df))

            p = float(integrate.quad(inner, lo_w, hi_w, limit=200)[0])
        return p - power

    hi = crit + 1.0
    while reach(hi) < 0:
        hi *= 2
    nc = optimize.brentq(reach, 0.0, hi, xtol=1e-10)
    return float(nc * std / math.sqrt(n))


def interpolate_at(xs: Sequence[float], ys: Sequence[float], x: float) -> float | None:
    """``y`` at ``x`` by linear interpolation between the points ``(xs, ys)`` (``xs``
    increasing); None when ``x`` lies outside ``[xs[0], xs[-1]]`` (no extrapolation) or no
    point is given."""
    a, b = _clean(xs, "xs"), _clean(ys, "ys")
    if a.size != b.size:
        raise ValueError(f"xs and ys must have the same length, got {a.size} != {b.size}")
    if np.any(np.diff(a) < 0):
        raise ValueError("xs must be non-decreasing")
    if a.size == 0 or not math.isfinite(x) or x < a[0] or x > a[-1]:
        return None
    return float(np.interp(x, a, b))


def correlation(x: Sequence[float], y: Sequence[float]) -> dict[str, float | int]:
    """Pearson and Spearman correlation of ``x`` and ``y`` (NaN if n < 3 or either is constant)."""
    a, b = _clean(x, "x"), _clean(y, "y")
    if a.size != b.size:
        raise ValueError(f"x and y must have the same length, got {a.size} != {b.size}")
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    n = int(a.size)
    out: dict[str, float | int] = {
        "n": n,
        "pearson_r": math.nan,
        "pearson_p": math.nan,
        "spearman_r": math.nan,
        "spearman_p": math.nan,
    }
    if n < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return out
    pr = stats.pearsonr(a, b)
    sr = stats.spearmanr(a, b)
    out.update(
        pearson_r=float(pr.statistic),
        pearson_p=float(pr.pvalue),
        spearman_r=float(sr.statistic),
        spearman_p=float(sr.pvalue),
    )
    return out


# The values a report's metrics can take (a difference of two of them lies within
# ``(lo - hi, hi - lo)``); a metric not listed here is treated as unbounded.
METRIC_RANGES: dict[str, tuple[float, float]] = {
    "accuracy": (0.0, 1.0),
    "bleu": (0.0, 100.0),
    "chrf": (0.0, 100.0),
    "perplexity": (1.0, math.inf),
    "loss": (0.0, math.inf),
}


def difference_range(metric: str) -> tuple[float, float]:
    """The range of a difference of two values of ``metric``: ``(lo - hi, hi - lo)`` from
    :data:`METRIC_RANGES`, ``(-inf, inf)`` for an unbounded or unknown metric."""
    lo, hi = METRIC_RANGES.get(metric, (-math.inf, math.inf))
    width = hi - lo
    return -width, width


def clip_interval(
    low: float, high: float, bounds: tuple[float, float]
) -> tuple[float, float, bool, bool]:
    """``(low, high)`` clipped to ``bounds``, with whether each end was clipped (an interval
    reaching past the values the quantity can take; NaN ends are left as they are)."""
    lo_b, hi_b = bounds
    cut_lo, cut_hi = bool(low < lo_b), bool(high > hi_b)
    return (lo_b if cut_lo else low), (hi_b if cut_hi else high), cut_lo, cut_hi


def pairing_gain(variant: Sequence[float], baseline: Sequence[float]) -> dict[str, float | int]:
    """What pairing bought on values of the same seeds: ``n``, ``pearson_r`` (correlation of the
    paired values), ``paired_std`` (std of the differences) and ``unpaired_std``
    (``sqrt(s_v^2 + s_b^2)``, the std the difference of two independent runs would have) and
    their ratio ``paired_std / unpaired_std`` (< 1: pairing cancelled shared noise; it is
    ``sqrt(1 - r)`` when both stds are equal). NaN where not computable (n < 2, or n < 3 for r).
    """
    a, b = _clean(variant, "variant"), _clean(baseline, "baseline")
    if a.size != b.size:
        raise ValueError(
            f"variant and baseline must have the same length, got {a.size} != {b.size}"
        )
    n = int(a.size)
    out: dict[str, float | int] = {
        "n": n,
        "pearson_r": correlation(a, b)["pearson_r"],
        "paired_std": math.nan,
        "unpaired_std": math.nan,
        "ratio": math.nan,
    }
    if n < 2:
        return out
    paired = float((a - b).std(ddof=1))
    unpaired = math.sqrt(float(a.var(ddof=1)) + float(b.var(ddof=1)))
    out.update(paired_std=paired, unpaired_std=unpaired)
    if unpaired > 0:
        out["ratio"] = paired / unpaired
    return out
