"""Statistics for comparison reports: mean +- std, paired differences with a 95 % CI and p-value.

Paired across seeds: run ``i`` of a variant and run ``i`` of the baseline share the seed (same
initialisation stream and training data order), so the test is ``scipy.stats.ttest_rel``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats


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
    interval at ``confidence``), ``t`` and ``p`` (two-sided ``scipy.stats.ttest_rel``). With fewer
    than two pairs, or differences that are all equal, the interval/test are NaN (not computable).
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
        "t": math.nan,
        "p": math.nan,
    }
    if n < 2:
        return out
    sd = float(d.std(ddof=1))
    out["std"] = sd
    if sd == 0.0:
        return out
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    res = stats.ttest_rel(a, b)
    out.update(
        ci_low=out["mean"] - half,
        ci_high=out["mean"] + half,
        t=float(res.statistic),
        p=float(res.pvalue),
    )
    return out


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
