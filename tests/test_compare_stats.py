"""Statistics of comparison reports on hand-made numbers (known t-test values)."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from gpam.compare.stats import correlation, paired_difference, summarize


def test_summarize_mean_and_sample_std() -> None:
    s = summarize([1.0, 2.0, 3.0, 4.0])
    assert s["n"] == 4 and s["mean"] == 2.5
    assert s["std"] == pytest.approx(math.sqrt(5 / 3))
    one = summarize([7.0])
    assert one["mean"] == 7.0 and math.isnan(one["std"])


def test_paired_difference_known_values() -> None:
    # differences 1, 2, 3: mean 2, sd 1, t = 2 / (1 / sqrt 3) = 2 sqrt 3, df 2
    a, b = [11.0, 22.0, 33.0], [10.0, 20.0, 30.0]
    d = paired_difference(a, b)
    assert d["n"] == 3 and d["mean"] == pytest.approx(2.0) and d["std"] == pytest.approx(1.0)
    t = 2 * math.sqrt(3)
    assert d["t"] == pytest.approx(t)
    assert d["p"] == pytest.approx(2 * stats.t.sf(t, 2))
    assert d["p"] == pytest.approx(0.07417990022744862, rel=1e-9)
    half = 4.302652729911275 / math.sqrt(3)  # t_{0.975, 2} * sd / sqrt(n)
    assert d["ci_low"] == pytest.approx(2 - half) and d["ci_high"] == pytest.approx(2 + half)


def test_paired_difference_sign_and_degenerate_cases() -> None:
    d = paired_difference([0.1, 0.2, 0.25, 0.3], [0.3, 0.4, 0.5, 0.6])
    assert d["mean"] < 0 and d["ci_high"] < 0 and d["p"] < 0.05
    const = paired_difference([2.0, 3.0], [1.0, 2.0])  # all differences equal -> no test
    assert const["mean"] == 1.0 and math.isnan(const["p"]) and math.isnan(const["ci_low"])
    single = paired_difference([1.0], [0.0])
    assert single["n"] == 1 and math.isnan(single["p"])
    with pytest.raises(ValueError, match="same length"):
        paired_difference([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="confidence"):
        paired_difference([1.0, 2.0], [1.0, 3.0], confidence=1.5)


def test_correlation_known_and_degenerate() -> None:
    c = correlation([1, 2, 3, 4], [2, 4, 6, 8.5])
    assert c["pearson_r"] == pytest.approx(stats.pearsonr([1, 2, 3, 4], [2, 4, 6, 8.5])[0])
    assert c["spearman_r"] == pytest.approx(1.0)
    anti = correlation([1, 2, 3], [3, 2, 1])
    assert anti["pearson_r"] == pytest.approx(-1.0)
    assert math.isnan(correlation([1, 2], [1, 2])["pearson_r"])
    assert math.isnan(correlation([1, 1, 1], [1, 2, 3])["pearson_r"])
    assert correlation([1, 2, float("nan"), 4], [1, 2, 3, 5])["n"] == 3
