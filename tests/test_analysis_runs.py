"""Rank-collapse, lambda-sweep and gradients runs: schema, seeding, known-answer behaviour."""

from __future__ import annotations

import json
import math

import pytest
import torch

from gpam.analysis import (
    FaithfulnessConfig,
    GradientsConfig,
    RankCollapseConfig,
    faithfulness,
    gradients,
    rank_collapse,
    run_gradients,
    run_rank_collapse,
)

TINY = {"depth": 3, "length": 6, "width": 8, "heads": 2, "trials": 2, "batch": 2}
RESULT_KEYS = {
    "variant",
    "lam_pos",
    "lam_neg",
    "architecture",
    "residual_fro_mean",
    "residual_fro_std",
    "residual_composite_mean",
    "residual_composite_std",
    "seeds",
}


def test_rank_collapse_schema_and_seeds(tmp_path):
    res = run_rank_collapse(
        tmp_path,
        variants=["softmax", "dagpam"],
        lam_neg=[0.5, 2.0],
        architectures=["attention", "preln"],
        show_progress=False,
        **TINY,
    )
    data = json.loads((tmp_path / "rank_collapse.json").read_text())
    assert set(data) == {"config", "results"}
    assert data["config"]["depth"] == 3 and data["config"]["seed"] == 0
    assert len(data["results"]) == 6  # (softmax + 2 dagpam) x 2 architectures
    for r in data["results"]:
        assert set(r) >= RESULT_KEYS
        assert len(r["residual_fro_mean"]) == 4 and len(r["residual_composite_std"]) == 4
        assert r["seeds"] == [0, 1]
        assert r["residual_fro_mean"][0] > 0.5  # random inputs start far from collapse
    dag = [r for r in data["results"] if r["variant"] == "dagpam"]
    assert {(r["lam_neg"], r["lam_pos"]) for r in dag} == {(0.5, 1.5), (2.0, 3.0)}
    assert (tmp_path / "rank_collapse_attention.png").stat().st_size > 1000
    assert (tmp_path / "rank_collapse_preln.png").exists()
    report = (tmp_path / "report.md").read_text()
    assert "dagpam lam_neg=2" in report and "layer 3" in report
    assert res["results"][0]["residual_fro_mean"] == data["results"][0]["residual_fro_mean"]


def test_rank_collapse_is_reproducible_and_std_matches_trials():
    cfg = dict(variants=["softmax"], architectures=["attention"], **TINY)
    a = rank_collapse(RankCollapseConfig(**cfg), show_progress=False)["results"][0]
    b = rank_collapse(RankCollapseConfig(**cfg), show_progress=False)["results"][0]
    assert a["residual_fro_mean"] == b["residual_fro_mean"]
    trials = torch.tensor(a["residual_fro_trials"], dtype=torch.float64)
    torch.testing.assert_close(
        trials.std(0), torch.tensor(a["residual_fro_std"], dtype=torch.float64)
    )
    one = rank_collapse(RankCollapseConfig(**{**cfg, "trials": 1}), show_progress=False)
    assert one["results"][0]["residual_fro_std"] == [0.0] * 4


def test_pure_softmax_stack_collapses_but_skip_keeps_residual():
    cfg = RankCollapseConfig(
        variants=["softmax"], architectures=["attention", "attention_skip"], depth=6, length=12,
        width=16, heads=2, trials=2, batch=2,
    )  # fmt: skip
    pure, skip = rank_collapse(cfg, show_progress=False)["results"]
    assert pure["residual_fro_mean"][-1] < 1e-3 * pure["residual_fro_mean"][0]
    assert skip["residual_fro_mean"][-1] > pure["residual_fro_mean"][-1]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"variants": ["nope"]}, "variant"),
        ({"depth": 0}, "depth"),
        ({"width": 10, "heads": 4}, "width"),
        ({"lam_neg": [-1.0]}, "lam_neg"),
        ({"architectures": ["mlp"]}, "architectures"),
        ({"dtype": "float16"}, "dtype"),
    ],
)
def test_rank_collapse_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        rank_collapse(RankCollapseConfig(**kwargs), show_progress=False)


def test_faithfulness_sweeps():
    cfg = FaithfulnessConfig(lam_neg_values=[0.0, 1.0], lam_pos_values=[1.0, 3.0], **TINY)
    res = faithfulness(cfg, show_progress=False)
    a, b = res["sweeps"]
    assert [r["lam_neg"] for r in a["results"]] == [0.0, 1.0]
    assert [r["lam_pos"] for r in a["results"]] == [1.0, 2.0]  # affine: 1 + lam_neg
    assert all(r["affine"] for r in a["results"])
    assert [(r["lam_pos"], r["lam_neg"], r["affine"]) for r in b["results"]] == [
        (1.0, 1.0, False),
        (3.0, 1.0, False),
    ]
    with pytest.raises(ValueError, match="lam_pos"):
        faithfulness(FaithfulnessConfig(lam_pos_values=[-1.0], **TINY), show_progress=False)


def test_lam_neg_zero_sweep_point_equals_softmax_layer():
    one = {**TINY, "depth": 1}  # one layer: daGPAM's extra weights are drawn after q/k/v/out
    soft = rank_collapse(
        RankCollapseConfig(variants=["softmax"], architectures=["attention"], **one),
        show_progress=False,
    )
    sweep = faithfulness(
        FaithfulnessConfig(lam_neg_values=[0.0], lam_pos_values=[1.0], **one), show_progress=False
    )
    got = sweep["sweeps"][0]["results"][0]["residual_fro_trials"]
    want = soft["results"][0]["residual_fro_trials"]
    for g_row, w_row in zip(got, want):
        assert all(math.isclose(g, w, rel_tol=1e-9) for g, w in zip(g_row, w_row))


def test_gradients_run_records_every_layer_and_map(tmp_path):
    res = run_gradients(
        tmp_path, variants=["softmax", "dagpam"], lam_neg=[1.0], steps=3, batch=4, width=16,
        heads=2, layers=2, show_progress=False,
    )  # fmt: skip
    soft, dag = res["runs"]
    assert dag["logit_names"] == ["S_pos", "S_neg"] and soft["logit_names"] == ["S"]
    assert soft["steps"] == [0, 1, 2] and len(soft["layers"]) == 2
    for run in (soft, dag):
        for lay in run["layers"]:
            assert all(v > 0 for v in lay["logit_grad_norm"])
            assert all(v > 0 for v in lay["input_grad_norm"])
            assert len(lay["max_weight"]) == 3
    lay = dag["layers"][0]
    total = [
        math.hypot(p, n) for p, n in zip(lay["logit_grad_norm_S_pos"], lay["logit_grad_norm_S_neg"])
    ]
    assert total == pytest.approx(lay["logit_grad_norm"])
    assert "shrink_bound" in soft["layers"][0] and "shrink_bound" not in lay
    assert all(0 <= f <= 1 for f in soft["layers"][0]["bound_holds_frac"])
    assert res["config"]["chance_loss"] == pytest.approx(math.log(16 - 1))  # default vocab 16
    data = json.loads((tmp_path / "gradients.json").read_text())
    assert set(data) == {"config", "runs"} and data["config"]["gamma"] == 1.0
    for name in ("gradients_logit_grad_norm.png", "gradients_shrink_bound.png", "report.md"):
        assert (tmp_path / name).exists(), name
    assert "dagpam lam_neg=1" in (tmp_path / "report.md").read_text()


def test_gradients_bad_config():
    with pytest.raises(ValueError, match="gamma"):
        gradients(GradientsConfig(gamma=-1.0), show_progress=False)
    with pytest.raises(ValueError, match="steps"):
        gradients(GradientsConfig(steps=0), show_progress=False)
