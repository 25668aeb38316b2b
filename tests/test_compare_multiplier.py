"""The compute multiplier (gpam.compare.multiplier) on synthetic loss curves with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gpam.compare import multiplier as mm

SIZES = {"s": 1e6, "m": 1e7, "l": 1e8}


def softmax_loss(c: float) -> float:
    return c**-0.1


def _points(variant_loss, seeds=(0,), noise=None) -> list[dict]:
    """softmax at L = C^-0.1 and 'v' at the same computes with loss ``variant_loss(C)``;
    ``noise(label, seed)`` multiplies each run's loss."""
    pts = []
    for seed in seeds:
        for size, c in SIZES.items():
            for lab, f in (("softmax", softmax_loss), ("v", variant_loss)):
                k = noise(lab, seed) if noise else 1.0
                pts.append({"label": lab, "size": size, "seed": seed, "compute": c,
                            "loss": f(c) * k})  # fmt: skip
    return pts


def _cell(res: dict, label: str, size: str) -> dict:
    return next(c for c in res["cells"] if c["label"] == label and c["size"] == size)


def test_fit_recovers_a_power_law() -> None:
    f = mm.fit_power_law([1e6, 1e7, 1e8], [3 * c**-0.2 for c in (1e6, 1e7, 1e8)])
    assert f.a == pytest.approx(3) and f.b == pytest.approx(0.2)
    assert (f.c_min, f.c_max) == (1e6, 1e8)


@pytest.mark.parametrize("method", sorted(mm.METHODS))
def test_variant_equal_to_softmax_at_twice_the_compute_gives_2(method: str) -> None:
    res = mm.compute_multipliers(_points(lambda c: softmax_loss(2 * c)), n_boot=50, method=method)
    for size in ("s", "m"):
        assert _cell(res, "v", size)["multiplier"] == pytest.approx(2.0)
        assert _cell(res, "softmax", size)["multiplier"] == pytest.approx(1.0)
    # at the largest size softmax would need 2e8 > 1e8, its largest run: not reached, a bound
    big = _cell(res, "v", "l")
    assert big["status"] == mm.ABOVE and big["multiplier"] is None
    assert big["bound"] == pytest.approx(1.0)  # M > c_max / C = 1
    assert res["fits"]["v"]["b"] == pytest.approx(0.1)


@pytest.mark.parametrize("method", sorted(mm.METHODS))
def test_worse_variant_gives_below_1(method: str) -> None:
    res = mm.compute_multipliers(_points(lambda c: softmax_loss(c / 2)), n_boot=50, method=method)
    assert _cell(res, "v", "m")["multiplier"] == pytest.approx(0.5)
    assert _cell(res, "v", "l")["multiplier"] == pytest.approx(0.5)
    small = _cell(res, "v", "s")  # softmax reaches that loss below its smallest run
    assert small["status"] == mm.BELOW and small["bound"] == pytest.approx(1.0)


@pytest.mark.parametrize("method", sorted(mm.METHODS))
def test_bootstrap_interval_over_paired_seeds_covers_the_truth(method: str) -> None:
    rng = np.random.default_rng(1)
    shared = {s: math.exp(rng.normal(0, 0.02)) for s in range(8)}  # a seed's data order
    own = {(lab, s): math.exp(rng.normal(0, 0.002)) for lab in ("softmax", "v") for s in range(8)}
    res = mm.compute_multipliers(
        _points(lambda c: softmax_loss(2 * c), range(8), lambda lab, s: shared[s] * own[(lab, s)]),
        n_boot=500,
        method=method,
    )
    cell = _cell(res, "v", "m")
    assert cell["ci_low"] < 2.0 < cell["ci_high"]
    assert cell["ci_high"] / cell["ci_low"] < 2  # pairing removes the shared seed noise
    assert res["seeds"] == list(range(8)) and cell["n_seeds"] == 8


@pytest.mark.parametrize("method", sorted(mm.METHODS))
def test_trend_over_size(method: str) -> None:
    # M = 1.5 at 1e6 and 3 at 1e7 (at 1e8 not reached): log M rises by log 2 per decade
    m = {1e6: 1.5, 1e7: 3.0, 1e8: 3.0}
    t = mm.compute_multipliers(_points(lambda c: softmax_loss(m[c] * c)), n_boot=50, method=method)[
        "trend"
    ]["v"]
    assert t["slope"] == pytest.approx(math.log10(2.0))
    assert t["n_reached"] == 2 and t["verdict"] == "grows with size"
    m = {1e6: 3.0, 1e7: 1.5, 1e8: 0.75}
    t = mm.compute_multipliers(_points(lambda c: softmax_loss(m[c] * c)), n_boot=50, method=method)[
        "trend"
    ]["v"]
    assert t["slope"] == pytest.approx(-math.log10(2.0))
    assert t["verdict"] == "shrinks with size"


@pytest.mark.parametrize("method", sorted(mm.METHODS))
def test_flat_softmax_gives_no_multiplier(method: str) -> None:
    pts = _points(lambda c: 1.0)
    for p in pts:
        if p["label"] == "softmax":
            p["loss"] = 2.0
    cell = _cell(mm.compute_multipliers(pts, n_boot=20, method=method), "v", "m")
    assert cell["status"] == mm.FLAT and cell["multiplier"] is None


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="two or more sizes"):
        mm.compute_multipliers([p for p in _points(softmax_loss) if p["size"] == "s"])
    with pytest.raises(ValueError, match="loss must be positive"):
        mm.fit_power_law([1, 2], [1, 0])
    with pytest.raises(ValueError, match="points"):
        mm.compute_multipliers([])


def test_interpolation_goes_through_softmax_points_where_a_power_law_does_not() -> None:
    # softmax's curve bends (not a power law): a variant with softmax's own loss at the middle
    # size and the same compute has M = 1 by interpolation, not by the (poor) power-law fit
    bent = {1e6: 4.0, 1e7: 3.0, 1e8: 2.9}
    pts = [{"label": lab, "size": size, "seed": 0, "compute": c, "loss": bent[c]}
           for size, c in SIZES.items() for lab in ("softmax", "v")]  # fmt: skip
    interp = mm.compute_multipliers(pts, n_boot=20)
    assert interp["method"] == "interp"
    assert _cell(interp, "v", "m")["multiplier"] == pytest.approx(1.0)
    power = mm.compute_multipliers(pts, n_boot=20, method="power")
    assert abs(_cell(power, "v", "m")["multiplier"] - 1.0) > 0.3
    assert power["fits"]["softmax"]["rms_log"] > 0.01


def test_interpolation_needs_a_falling_softmax_curve() -> None:
    up = {1e6: 4.0, 1e7: 3.0, 1e8: 3.5}  # loss rises at the largest size: no inversion
    pts = [{"label": lab, "size": size, "seed": 0, "compute": c, "loss": up[c]}
           for size, c in SIZES.items() for lab in ("softmax", "v")]  # fmt: skip
    assert _cell(mm.compute_multipliers(pts, n_boot=5), "v", "m")["status"] == mm.FLAT
    with pytest.raises(ValueError, match="method"):
        mm.compute_multipliers(pts, method="spline")
