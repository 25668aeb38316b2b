"""The compute multiplier of each setting over softmax, from runs at several model sizes.

Per setting, the seed means of loss and training FLOPs at each size are fitted by a power law
``L = a * C^-b`` (least squares of ``log L`` on ``log C``; reported with its RMS residual). A
setting's multiplier at a size is the softmax compute that reaches the setting's loss there,
divided by the setting's compute: ``M = C_softmax(L) / C``; ``M > 1``: softmax needs M times the
compute for the same loss. Softmax's compute for a loss is read (``method``) by log-linear
interpolation between its measured sizes (``"interp"``, the default: it goes through softmax's
measured points, so a poor power law cannot move the answer; it needs softmax's loss to fall
with every size, else the cell is :data:`FLAT`) or from its power-law fit (``"power"``). Either
is read only inside the compute range softmax was measured at; a loss it does not reach there
is "not reached" (above: softmax would need more compute than its largest run,
so ``M > c_max / C``; below: ``M < c_min / C``), never an extrapolation. The 95 % interval
resamples seeds with replacement, the same seeds for every setting and size (paired), and
recomputes the means, softmax's fit and every multiplier; the trend is the slope of ``log M``
against ``log C`` over the sizes where M was reached (> 0: the advantage grows with compute).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

FORM = "power law L = a * C^-b, least squares of log L on log C over the seed means per size"
METHODS = {
    "interp": "log-linear interpolation of softmax's seed-mean loss between its measured sizes "
    "(log L linear in log C on each segment)",
    "power": "softmax's power-law fit",
}
REACHED, ABOVE, BELOW, FLAT = "reached", "above", "below", "flat"


@dataclass(frozen=True)
class PowerLaw:
    """``L = a * C^-b`` fitted on computes ``c_min .. c_max`` (the measured range)."""

    a: float
    b: float
    c_min: float
    c_max: float

    def loss(self, compute: float | np.ndarray) -> float | np.ndarray:
        """The fitted loss at ``compute``."""
        return self.a * np.power(compute, -self.b)

    def compute_for(self, loss: float) -> tuple[float | None, str]:
        """``(compute, status)``: the compute inside the measured range whose fitted loss is
        ``loss`` (status :data:`REACHED`), else ``(None, ABOVE | BELOW)``; ``(None, FLAT)`` when
        the fit does not fall with compute (b <= 1e-9, rounding included: no compute buys a
        lower loss)."""
        if not self.b > 1e-9:
            return None, FLAT
        log_c = (math.log(self.a) - math.log(loss)) / self.b  # in log space: no overflow
        if log_c > math.log(self.c_max) + 1e-9:
            return None, ABOVE
        if log_c < math.log(self.c_min) - 1e-9:
            return None, BELOW
        return math.exp(log_c), REACHED


@dataclass(frozen=True)
class LogInterp:
    """Softmax's measured seed means, log-linear between them, for inversion."""

    compute: tuple[float, ...]  # increasing
    loss: tuple[float, ...]

    @property
    def c_min(self) -> float:
        return self.compute[0]

    @property
    def c_max(self) -> float:
        return self.compute[-1]

    def compute_for(self, loss: float) -> tuple[float | None, str]:
        """As :meth:`PowerLaw.compute_for`; :data:`FLAT` unless the loss falls at every size."""
        ls = np.log(self.loss)
        if not np.all(np.diff(ls) < 0):
            return None, FLAT
        y = math.log(loss)
        if y > ls[0] + 1e-12:
            return None, BELOW
        if y < ls[-1] - 1e-12:
            return None, ABOVE
        return float(np.exp(np.interp(y, ls[::-1], np.log(self.compute)[::-1]))), REACHED


def fit_power_law(compute: Sequence[float], loss: Sequence[float]) -> PowerLaw:
    """Least-squares fit of ``log L = log a - b log C``; needs two or more distinct computes and
    positive values (ValueError naming the argument otherwise)."""
    c, y = np.asarray(compute, dtype=float), np.asarray(loss, dtype=float)
    if c.shape != y.shape or c.ndim != 1:
        raise ValueError(f"compute and loss must be 1-D of one length, got {c.shape}, {y.shape}")
    if not (np.all(c > 0) and np.all(np.isfinite(c))):
        raise ValueError(f"compute must be positive and finite, got {c.tolist()}")
    if not (np.all(y > 0) and np.all(np.isfinite(y))):
        raise ValueError(f"loss must be positive and finite for a power law, got {y.tolist()}")
    if len(np.unique(c)) < 2:
        raise ValueError(f"compute needs two or more distinct values to fit, got {c.tolist()}")
    slope, icpt = np.polyfit(np.log(c), np.log(y), 1)
    return PowerLaw(float(math.exp(icpt)), float(-slope), float(c.min()), float(c.max()))


def _means(points: list[dict[str, Any]], seeds: Sequence[int]) -> dict[tuple[str, str], tuple]:
    """``(label, size) -> (mean compute, mean loss)`` over ``seeds`` (with repeats)."""
    by = {(p["label"], p["size"], p["seed"]): p for p in points}
    cells = sorted({(p["label"], p["size"]) for p in points})
    out = {}
    for lab, size in cells:
        got = [by[(lab, size, s)] for s in seeds]
        out[(lab, size)] = (
            float(np.mean([g["compute"] for g in got])),
            float(np.mean([g["loss"] for g in got])),
        )
    return out


def _multipliers(
    means: dict[tuple[str, str], tuple], base: str, sizes: list[str], method: str = "interp"
) -> tuple[dict[tuple[str, str], tuple[float, str]], PowerLaw | LogInterp]:
    """Every cell's ``(multiplier, status)``: the value when reached, ``inf`` above the range,
    0 below it, nan when softmax's curve does not fall with compute."""
    pts = sorted(means[(base, s)] for s in sizes)
    if method == "power":
        fit: PowerLaw | LogInterp = fit_power_law(*zip(*pts))
    else:
        fit = LogInterp(tuple(c for c, _ in pts), tuple(x for _, x in pts))
    out = {}
    for (lab, size), (c, loss) in means.items():
        cs, status = fit.compute_for(loss)
        value = {REACHED: (cs or 0.0) / c, ABOVE: math.inf, BELOW: 0.0, FLAT: math.nan}[status]
        out[(lab, size)] = (value, status)
    return out, fit


def _slope(xs: list[float], ms: list[float]) -> float:
    """Slope of log M on log C over the reached points (nan with fewer than two)."""
    pts = [(x, m) for x, m in zip(xs, ms) if math.isfinite(m) and m > 0]
    if len({x for x, _ in pts}) < 2:
        return math.nan
    return float(np.polyfit(np.log([x for x, _ in pts]), np.log([m for _, m in pts]), 1)[0])


def _interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval that keeps ``inf``/0 (not reached) as they are, nan ignored."""
    v = values[~np.isnan(values)]
    if not len(v):
        return math.nan, math.nan
    q = (1 - level) / 2
    lo, hi = np.quantile(v, [q, 1 - q], method="inverted_cdf")
    return float(lo), float(hi)


def compute_multipliers(
    points: list[dict[str, Any]],
    base: str = "softmax",
    n_boot: int = 2000,
    seed: int = 0,
    method: str = "interp",
) -> dict[str, Any]:
    """Multipliers of every label over ``base`` at each size, with 95 % paired-bootstrap
    intervals over seeds, each label's own power-law fit and the trend over size.

    ``points``: one per run, ``{"label", "size", "seed", "compute", "loss"}``. Only seeds that
    every (label, size) cell has are used (pairing). Returns ``{"form", "base", "seeds",
    "sizes", "fits", "cells", "trend"}`` (see :func:`gpam.compare.scaling.write_scaling_report`).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    if not points:
        raise ValueError("points must hold at least one run")
    cells = {(p["label"], p["size"]) for p in points}
    sizes = sorted({p["size"] for p in points if p["label"] == base},
                   key=lambda s: min(p["compute"] for p in points if p["size"] == s))  # fmt: skip
    if len(sizes) < 2:
        raise ValueError(f"base {base!r} needs runs at two or more sizes, got {sizes}")
    seeds = sorted(
        set.intersection(*({p["seed"] for p in points if (p["label"], p["size"]) == cell}
                           for cell in cells))
    )  # fmt: skip
    if not seeds:
        raise ValueError("no seed was run in every (label, size) cell: nothing to pair")
    points = [p for p in points if p["seed"] in seeds]
    means = _means(points, seeds)
    point, base_fit = _multipliers(means, base, sizes, method)
    labels = sorted({lab for lab, _ in cells}, key=lambda lab: (lab != base, lab))
    rng = np.random.default_rng(seed)
    boot = {cell: np.empty(n_boot) for cell in means}
    slopes = {lab: np.empty(n_boot) for lab in labels}
    for i in range(n_boot):
        pick = [seeds[j] for j in rng.integers(0, len(seeds), len(seeds))]
        try:
            got, _ = _multipliers(_means(points, pick), base, sizes, method)
        except ValueError:  # e.g. a resample whose means cannot be fitted
            got = {cell: (math.nan, FLAT) for cell in means}
        for cell, (v, _) in got.items():
            boot[cell][i] = v
        for lab in labels:
            mine = [cell for cell in means if cell[0] == lab]
            slopes[lab][i] = _slope([means[c][0] for c in mine], [got[c][0] for c in mine])
    fits = {}
    for lab in labels:
        own = [means[c] for c in sorted(means) if c[0] == lab]
        try:
            f = fit_power_law([c for c, _ in own], [x for _, x in own])
            res = [math.log(x) - math.log(float(f.loss(c))) for c, x in own]
            rms = float(np.sqrt(np.mean(np.square(res))))
            fits[lab] = {"a": f.a, "b": f.b, "c_min": f.c_min, "c_max": f.c_max, "rms_log": rms}
        except ValueError as err:
            fits[lab] = {"error": str(err)}
    out_cells = []
    for (lab, size), (c, loss) in sorted(means.items(), key=lambda kv: (kv[0][0], kv[1][0])):
        value, status = point[(lab, size)]
        b = boot[(lab, size)]
        lo, hi = _interval(b)
        finite = b[~np.isnan(b)]
        out_cells.append(
            {
                "label": lab, "size": size, "compute": c, "loss": loss, "n_seeds": len(seeds),
                "multiplier": value if status == REACHED else None, "status": status,
                "bound": {ABOVE: base_fit.c_max / c, BELOW: base_fit.c_min / c}.get(status),
                "ci_low": lo, "ci_high": hi,
                "reached_frac": float(np.mean((finite > 0) & np.isfinite(finite)))
                if len(finite) else 0.0,
            }
        )  # fmt: skip
    trend = {}
    for lab in labels:
        if lab == base:
            continue
        mine = [c for c in out_cells if c["label"] == lab]
        est = _slope([c["compute"] for c in mine], [c["multiplier"] or math.nan for c in mine])
        lo, hi = _interval(slopes[lab])
        trend[lab] = {
            "slope": est,
            "ci_low": lo,
            "ci_high": hi,
            "n_reached": sum(c["status"] == REACHED for c in mine),
            "verdict": _verdict(est, lo, hi),
        }
    return {
        "form": FORM,
        "method": method,
        "method_text": METHODS[method],
        "base": base,
        "seeds": seeds,
        "sizes": sizes,
        "n_boot": n_boot,
        "fits": fits,
        "cells": out_cells,
        "trend": trend,
    }


def _verdict(slope: float, lo: float, hi: float) -> str:
    """What the trend's interval says about the multiplier as compute grows."""
    if not math.isfinite(slope):
        return "no trend: fewer than two sizes reached"
    if lo > 0:
        return "grows with size"
    if hi < 0:
        return "shrinks with size"
    return "unresolved (the interval covers 0)"
