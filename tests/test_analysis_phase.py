"""`gpam analyze phase`: known answers for Jacobian, region quantity, gains, critical gain."""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from tests.reference import (
    centered_ref,
    cog_ref,
    dagpam_ref,
    sigmoid_ref,
    softmax_ref,
)

import gpam
from gpam.analysis.phase import PhaseConfig, critical_point, phase, scale_gains
from gpam.analysis.phase_maps import (
    jacobian_rel,
    logit_std,
    queries_keys,
    region_quantity,
    softmax_jacobian_fro,
    uniform_jacobian_fro,
)
from gpam.analysis.rank_collapse import RankCollapseConfig, rank_collapse
from gpam.analysis.stacks import VariantSpec, build_stack
from gpam.cli.main import main
from gpam.nn.multihead import NEG_QUERIES

TINY = {"depth": 3, "length": 6, "width": 8, "heads": 2, "trials": 2, "batch": 2}


# ------------------------------------------------------------------------ closed forms
@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 7), scale=st.floats(0.1, 20.0), seed=st.integers(0, 10_000))
@example(n=2, scale=6.0, seed=609)  # a saturated row that once exposed a cancellation
def test_softmax_jacobian_closed_form_equals_autograd(n, scale, seed):
    s = torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale
    jac = torch.autograd.functional.jacobian(lambda z: z.softmax(-1), s)
    # relative: saturated rows have tiny Jacobians (autograd's own diagonal p - p^2 carries an
    # absolute round-off of ~1e-16, hence atol)
    assert torch.allclose(softmax_jacobian_fro(s.softmax(-1)), jac.norm(), rtol=1e-6, atol=1e-15)


def test_softmax_jacobian_of_a_saturated_row_has_no_cancellation():
    d = 1e-9  # p = (1 - d, d): ||J||_F = 2 p_1 p_2 exactly
    p = torch.tensor([1 - d, d], dtype=torch.float64)
    assert math.isclose(float(softmax_jacobian_fro(p)), 2 * (1 - d) * d, rel_tol=1e-6)


def test_uniform_row_reference():
    n = 7
    p = torch.full((n,), 1.0 / n, dtype=torch.float64)
    assert math.isclose(float(softmax_jacobian_fro(p)), uniform_jacobian_fro(n), rel_tol=1e-12)
    assert math.isclose(uniform_jacobian_fro(n), math.sqrt(n - 1) / n)


def _identity_keys(n: int) -> torch.Tensor:
    return torch.eye(n, dtype=torch.float64).view(1, 1, n, n)


def _row_map(variant: str, mha, x: torch.Tensor):
    """Reference map of one row of logits (via tests/reference.py with keys = identity and
    scale 1, so that the reference's logits are exactly the row given)."""
    n = x.shape[1]
    eye = _identity_keys(n)

    def one(fn, s, **kw):
        return fn(s.view(1, 1, 1, n), eye, eye, scale=1.0, **kw)[1].view(n)

    if variant == "softmax":
        return lambda s: one(softmax_ref, s)
    if variant == "centered":
        return lambda s: one(centered_ref, s)
    if variant == "cog":
        return lambda s: one(cog_ref, s)
    if variant == "sigmoid":
        return lambda s: one(sigmoid_ref, s)
    raise AssertionError(variant)


def _logits(q, k, scale):
    s = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    return (q @ k.transpose(-2, -1)) * s


@pytest.mark.parametrize("variant", ["softmax", "centered", "cog", "sigmoid"])
def test_single_map_jacobian_equals_autograd_of_reference(variant):
    assert variant in gpam.VARIANTS
    mha = gpam.MultiheadAttention(8, 2, attention=variant, dtype=torch.float64)
    scale_gains(torch.nn.ModuleList([mha]), 3.0, 1.0)  # away from uniform
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    got = jacobian_rel(mha, x)
    q, _, k, scale = queries_keys(mha, x)
    s = _logits(q, k, scale)
    f = _row_map(variant, mha, x)
    want = torch.empty_like(got)
    for idx in torch.cartesian_prod(*(torch.arange(d) for d in s.shape[:3])).tolist():
        jac = torch.autograd.functional.jacobian(f, s[tuple(idx)])
        want[tuple(idx)] = jac.norm() / uniform_jacobian_fro(5)
    assert torch.allclose(got, want, atol=1e-10)


@pytest.mark.parametrize("neg_query", ["linear", "negate", "full", "relu_linear"])
def test_dagpam_jacobian_equals_autograd_of_reference(neg_query):
    assert neg_query in NEG_QUERIES
    mha = gpam.MultiheadAttention(
        8, 2, attention="dagpam", lam_neg=0.7, neg_query=neg_query, dtype=torch.float64
    )
    scale_gains(torch.nn.ModuleList([mha]), 2.5, 1.0)
    x = torch.randn(2, 4, 8, dtype=torch.float64)
    got = jacobian_rel(mha, x)
    q, q_neg, k, scale = queries_keys(mha, x)
    s_pos, s_neg = _logits(q, k, scale), _logits(q_neg, k, scale)
    n, eye = 4, _identity_keys(4)

    def f(s):  # both rows of logits -> the row of W
        a, b = s[:n].view(1, 1, 1, n), s[n:].view(1, 1, 1, n)
        return dagpam_ref(a, b, eye, eye, lam_neg=0.7, scale=1.0)[1].view(n)

    want = torch.empty_like(got)
    for idx in torch.cartesian_prod(*(torch.arange(d) for d in s_pos.shape[:3])).tolist():
        row = torch.cat([s_pos[tuple(idx)], s_neg[tuple(idx)]])
        want[tuple(idx)] = torch.autograd.functional.jacobian(f, row).norm() / uniform_jacobian_fro(
            n
        )
    assert torch.allclose(got, want, atol=1e-10)


def test_diff_jacobian_equals_autograd_of_reference():
    mha = gpam.MultiheadAttention(8, 4, attention="diff", layer_idx=2, dtype=torch.float64)
    x = torch.randn(1, 4, 8, dtype=torch.float64) * 3
    got = jacobian_rel(mha, x)
    q, _, k, scale = queries_keys(mha, x)
    s1, s2 = _logits(q[:, 0::2], k[:, 0::2], scale), _logits(q[:, 1::2], k[:, 1::2], scale)
    lam = float(mha.diff_lambda().detach())
    n, eye = 4, _identity_keys(4)

    def f(s):
        a, b = s[:n].view(1, 1, 1, n), s[n:].view(1, 1, 1, n)
        return dagpam_ref(a, b, eye, eye, lam_pos=1.0, lam_neg=lam, affine=False, scale=1.0)[1]

    want = torch.empty_like(got)
    for idx in torch.cartesian_prod(*(torch.arange(d) for d in s1.shape[:3])).tolist():
        row = torch.cat([s1[tuple(idx)], s2[tuple(idx)]])
        jac = torch.autograd.functional.jacobian(lambda z: f(z).view(n), row)
        want[tuple(idx)] = jac.norm() / uniform_jacobian_fro(n)
    assert torch.allclose(got, want, atol=1e-10)


def test_diff2_jacobian_equals_autograd_with_per_token_lambda():
    assert "diff2" in gpam.VARIANTS
    mha = gpam.MultiheadAttention(8, 2, attention="diff2", dtype=torch.float64)
    x = torch.randn(1, 4, 8, dtype=torch.float64) * 3
    got = jacobian_rel(mha, x)
    q, _, k, scale = queries_keys(mha, x)
    s1, s2 = _logits(q[:, 0::2], k, scale), _logits(q[:, 1::2], k, scale)
    lam = mha.diff2_lambda(x).detach().expand(*s1.shape[:3], 1)  # (B, H, L, 1)
    n, eye = 4, _identity_keys(4)
    want = torch.empty_like(got)
    for idx in torch.cartesian_prod(*(torch.arange(d) for d in s1.shape[:3])).tolist():
        lam_i = float(lam[tuple(idx)])

        def f(z, lam_i=lam_i):
            a, b = z[:n].view(1, 1, 1, n), z[n:].view(1, 1, 1, n)
            w = dagpam_ref(a, b, eye, eye, lam_pos=1.0, lam_neg=lam_i, affine=False, scale=1.0)
            return w[1].view(n)

        row = torch.cat([s1[tuple(idx)], s2[tuple(idx)]])
        jac = torch.autograd.functional.jacobian(f, row)
        want[tuple(idx)] = jac.norm() / uniform_jacobian_fro(n)
    assert torch.allclose(got, want, atol=1e-10)


def test_coda_has_no_logit_jacobian():
    mha = gpam.MultiheadAttention(8, 2, attention="coda", dtype=torch.float64)
    assert jacobian_rel(mha, torch.randn(1, 4, 8, dtype=torch.float64)) is None


def test_causal_jacobian_uses_visible_keys():
    mha = gpam.MultiheadAttention(8, 2, attention="softmax", dtype=torch.float64)
    with torch.no_grad():
        mha.q_proj.weight.zero_()
        mha.q_proj.bias.zero_()  # zero logits: every visible row is uniform
    rel = jacobian_rel(mha, torch.randn(1, 5, 8, dtype=torch.float64), is_causal=True)
    assert torch.isnan(rel[..., 0]).all()
    assert torch.allclose(rel[..., 1:], torch.ones_like(rel[..., 1:]), atol=1e-12)


# ------------------------------------------------------------------------ neg_identity
def test_neg_identity_gives_softmax_of_minus_logits():
    assert "neg_identity" in gpam.nn.multihead.NEG_INITS
    mha = gpam.MultiheadAttention(
        8, 2, attention="dagpam", lam_neg=1.5, neg_init="neg_identity", dtype=torch.float64
    )
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    _, w, _ = mha(x, need_weights=True)
    q, _, k, scale = queries_keys(mha, x)
    s = _logits(q, k, scale)
    want = 2.5 * s.softmax(-1) - 1.5 * (-s).softmax(-1)
    assert torch.allclose(w, want, atol=1e-12)


# ------------------------------------------------------------------------ region quantity
def test_region_quantity_by_hand_2x2():
    mha = gpam.MultiheadAttention(2, 1, attention="softmax", bias=False, dtype=torch.float64)
    with torch.no_grad():
        mha.q_proj.weight.copy_(torch.tensor([[1.0, 2.0], [0.0, 1.0]]))
        mha.k_proj.weight.copy_(torch.eye(2))
        mha.v_proj.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
        mha.out_proj.weight.copy_(torch.eye(2))
    # W_QK = Wq^T Wk = [[1, 0], [2, 1]]: ||.||_1 = 3; W_VO = diag(1, 2): ||.||_1 = ||.||_inf = 2
    # -> 4 sqrt(2) * 3 * 2 / sqrt(2) = 24
    assert torch.allclose(region_quantity(mha), torch.tensor([24.0], dtype=torch.float64))
    assert torch.allclose(
        region_quantity(mha, gamma=0.5), torch.tensor([12.0], dtype=torch.float64)
    )


def test_region_quantity_matches_dong_betas_and_scales_with_gains():
    from gpam.analysis.bounds import head_betas

    mha = gpam.MultiheadAttention(8, 2, attention="softmax", dtype=torch.float64)
    base = region_quantity(mha)
    assert torch.allclose(base, 4 * math.sqrt(2) * head_betas(mha) / math.sqrt(4))
    scale_gains(torch.nn.ModuleList([mha]), 3.0, 0.5)
    assert torch.allclose(region_quantity(mha), base * 9.0 * 0.25)


def test_qk_gain_scales_bias_free_logits_quadratically():
    mha = gpam.MultiheadAttention(8, 2, attention="dagpam", bias=False, dtype=torch.float64)
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    before = logit_std(mha, x)
    scale_gains(torch.nn.ModuleList([mha]), 2.0, 7.0)
    after = logit_std(mha, x)
    assert math.isclose(after["S"], 4 * before["S"], rel_tol=1e-12)
    assert math.isclose(after["S_neg"], 4 * before["S_neg"], rel_tol=1e-12)


# ------------------------------------------------------------------------ stacks
def test_attention_norm_block_is_attention_of_rmsnorm():
    layers = build_stack(VariantSpec("softmax"), "attention_norm", 1, 8, 2)
    x = torch.randn(2, 5, 8, dtype=torch.float64) * 3
    y = x / x.pow(2).mean(-1, keepdim=True).sqrt()
    assert torch.allclose(layers[0](x), layers[0].attn(y), atol=1e-10)


def test_gain_one_attention_reproduces_rank_collapse():
    rc = rank_collapse(
        RankCollapseConfig(
            **TINY, variants=["softmax", "dagpam"], lam_neg=[1.0], architectures=["attention"]
        ),
        show_progress=False,
    )
    ph = phase(
        PhaseConfig(
            **TINY,
            variants=["softmax", "dagpam"],
            lam_neg=[1.0],
            neg_query=["linear"],
            architectures=["attention"],
            qk_gains=[0.5, 1.0, 2.0],
        ),
        show_progress=False,
    )
    at_one = [r for r in ph["results"] if r["qk_gain"] == 1.0]
    assert [r["label"] for r in at_one] == [r["label"] for r in rc["results"]]
    for a, b in zip(at_one, rc["results"], strict=True):
        assert a["residual_fro_mean"] == b["residual_fro_mean"]
        assert a["residual_fro_std"] == b["residual_fro_std"]


def test_lam_neg_zero_dagpam_equals_softmax_at_every_gain():
    common = dict(TINY, architectures=["attention_norm"], qk_gains=[0.5, 2.0, 8.0])
    soft = phase(PhaseConfig(**common, variants=["softmax"]), show_progress=False)
    # negate adds no parameters, so the same seeds draw the same W_Q, W_K, W_V, W_O
    dag = phase(
        PhaseConfig(**common, variants=["dagpam"], lam_neg=[0.0], neg_query=["negate"]),
        show_progress=False,
    )
    for a, b in zip(soft["results"], dag["results"], strict=True):
        assert a["qk_gain"] == b["qk_gain"]
        assert torch.allclose(
            torch.tensor(a["residual_fro_mean"]), torch.tensor(b["residual_fro_mean"]), atol=1e-12
        )
        assert torch.allclose(
            torch.tensor(a["jacobian_rel_mean"]), torch.tensor(b["jacobian_rel_mean"]), atol=1e-12
        )
        assert math.isclose(a["region_quantity"], b["region_quantity"], rel_tol=1e-12)


# ------------------------------------------------------------------------ critical gain
def test_critical_point_log_interpolation():
    gains = [1.0, 2.0, 4.0, 8.0]
    g, i, t = critical_point(gains, [0.1, 0.3, 0.7, 0.9], 0.5)
    assert (i, t) == (2, pytest.approx(0.5))
    assert g == pytest.approx(2.0 * math.sqrt(2.0))
    assert critical_point(gains, [0.6, 0.7, 0.8, 0.9], 0.5)[:2] == (1.0, 0)
    assert critical_point(gains, [0.1, 0.2, 0.3, 0.4], 0.5) == (None, None, 0.0)
    g, i, _ = critical_point(gains, [None, 0.0, 0.5, 0.2], 0.5)  # exactly at a grid point
    assert (g, i) == (pytest.approx(4.0), 2)


def test_critical_table_interpolates_jacobian_and_region():
    from gpam.analysis.phase import critical_table

    def row(g, final, jac, reg):
        return {
            "variant": "softmax", "label": "softmax", "lam_neg": None, "neg_query": None,
            "neg_init": None, "architecture": "attention_norm", "qk_gain": g, "vo_gain": 1.0,
            "residual_fro_mean": [1.0, final], "jacobian_rel_mean": [jac], "region_quantity": reg,
        }  # fmt: skip

    rows = [row(1.0, 0.0, 1.0, 1.0), row(4.0, 1.0, 3.0, 16.0)]
    (c,) = critical_table(rows, 0.5)
    assert c["critical_gain"] == pytest.approx(2.0)
    assert c["jacobian_rel_at_critical"] == pytest.approx(2.0)
    assert c["region_quantity_at_critical"] == pytest.approx(4.0)  # log-linear: 1 -> 16


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="qk_gains"):
        PhaseConfig(qk_gains=[2.0, 1.0]).validate()
    with pytest.raises(ValueError, match="threshold"):
        PhaseConfig(threshold=1.5).validate()
    with pytest.raises(ValueError, match="architectures"):
        PhaseConfig(architectures=["mlp"]).validate()
    with pytest.raises(ValueError, match="neg_query"):
        PhaseConfig(variants=["dagpam"], neg_query=["sideways"]).validate()
    with pytest.raises(ValueError, match="neg_init"):
        PhaseConfig(variants=["dagpam"], neg_init=["zeros"]).validate()


# ------------------------------------------------------------------------ CLI
def test_phase_cli_tiny_grid(tmp_path, capsys):
    out = tmp_path / "ph"
    argv = ["analyze", "phase", "--variants", "softmax,dagpam,coda", "--lam-neg", "1"]
    argv += ["--neg-query", "linear,negate", "--qk-gains", "1,4", "--vo-gains", "1,2"]
    argv += ["--depth", "2", "--length", "5", "--width", "8", "--heads", "2", "--trials", "1"]
    assert main([*argv, "--out", str(out)]) == 0
    data = json.loads((out / "phase.json").read_text())
    assert set(data) == {"config", "results", "critical"}
    keys = {"variant", "lam_pos", "lam_neg", "neg_query", "neg_init", "architecture", "qk_gain"}
    keys |= {"vo_gain", "residual_fro_mean", "residual_fro_std", "jacobian_rel_mean"}
    keys |= {"region_quantity"}
    assert len(data["results"]) == 4 * 2 * 2
    for r in data["results"]:
        assert keys <= set(r)
        assert len(r["residual_fro_mean"]) == 3 and len(r["jacobian_rel_mean"]) == 2
    coda = [r for r in data["results"] if r["variant"] == "coda"]
    assert all(v is None for r in coda for v in r["jacobian_rel_mean"])
    ckeys = {"variant", "lam_neg", "neg_query", "neg_init", "architecture", "vo_gain"}
    ckeys |= {"critical_gain", "jacobian_rel_at_critical", "region_quantity_at_critical"}
    assert len(data["critical"]) == 4 * 2
    assert all(ckeys <= set(c) for c in data["critical"])
    assert {r["neg_query"] for r in data["results"] if r["variant"] == "dagpam"} == {
        "linear",
        "negate",
    }
    assert (out / "phase_dilemma_attention_norm_vo1.png").exists()
    assert (out / "phase_heatmap_attention_norm.png").exists()
    assert "Critical gains" in (out / "report.md").read_text()
    assert "phase.json" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--qk-gains", "2,1"], "qk_gains"),
        (["--architectures", "mlp"], "architectures"),
        (["--variants", "nope"], "nope"),
        (["--qk-gains", "a"], "--qk-gains"),
    ],
)
def test_phase_cli_errors_are_one_line(argv, needle, capsys, tmp_path):
    try:
        code = main(["analyze", "phase", *argv, "--out", str(tmp_path / "x")])
    except SystemExit as e:
        code = e.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert needle in err[-1]


@pytest.mark.parametrize("sub", ["rank-collapse", "faithfulness", "gradients", "phase"])
def test_every_analyze_subcommand_takes_neg_query(sub, capsys):
    with pytest.raises(SystemExit):
        main(["analyze", sub, "--help"])
    text = capsys.readouterr().out
    assert "--neg-query" in text and "--neg-init" in text


def test_rank_collapse_cli_passes_neg_query(tmp_path):
    out = tmp_path / "rc"
    argv = ["analyze", "rank-collapse", "--variants", "dagpam", "--lam-neg", "1"]
    argv += ["--neg-query", "negate", "--depth", "2", "--length", "5", "--width", "8"]
    argv += ["--heads", "2", "--trials", "1", "--architectures", "attention_norm"]
    assert main([*argv, "--out", str(out)]) == 0
    data = json.loads((out / "rank_collapse.json").read_text())
    assert data["config"]["neg_query"] == "negate"
    assert [r["label"] for r in data["results"]] == ["dagpam lam_neg=1 negate"]


# ------------------------------------------------------------------------ checkpoints
@pytest.mark.parametrize("variant", ["softmax", "dagpam"])
def test_checkpoint_at_initialisation_equals_its_reinitialised_twin(tmp_path, variant):
    """A checkpoint saved straight after construction with seed s is its own re-initialised
    twin (same seed): every measure must agree exactly, and the report must say so."""
    from gpam.analysis import run_phase
    from gpam.models import LMConfig, TransformerLM, save_pretrained

    cfg = LMConfig(vocab_size=11, d_model=16, n_layers=2, n_heads=2, attention=variant)
    torch.manual_seed(3)
    save_pretrained(TransformerLM(cfg), tmp_path / "m")
    res = run_phase(
        tmp_path / "out", checkpoint=tmp_path / "m", length=6, trials=2, batch=2, seed=3,
        show_progress=False,
    )  # fmt: skip
    trained, init = res["models"]
    assert (trained["which"], init["which"]) == ("trained", "init")
    for key in ("logit_std", "jacobian_rel", "region_quantity", "residual_model"):
        assert len(trained[key]) == 2
        assert trained[key] == init[key], key
    assert (trained["logit_std_neg"][0] is None) == (variant == "softmax")
    assert all(r > 0 for r in trained["region_quantity"])
    text = (tmp_path / "out" / "report.md").read_text()
    assert "(1x)" in text and "## trained" in text and "## init" in text
    assert json.loads((tmp_path / "out" / "phase_checkpoint.json").read_text())["config"]["causal"]


def test_checkpoint_attention_norm_stack_agrees_between_rank_collapse_and_phase(tmp_path):
    from gpam.analysis.checkpoint import rank_collapse_checkpoint
    from gpam.analysis.phase_checkpoint import phase_checkpoint
    from gpam.models import LMConfig, TransformerLM, save_pretrained

    cfg = LMConfig(vocab_size=13, d_model=16, n_layers=3, n_heads=2, attention="dagpam")
    save_pretrained(TransformerLM(cfg), tmp_path / "m")
    common = {"length": 7, "trials": 2, "batch": 2, "seed": 1, "show_progress": False}
    rc = rank_collapse_checkpoint(tmp_path / "m", architectures=["attention_norm"], **common)
    ph = phase_checkpoint(tmp_path / "m", architecture="attention_norm", **common)
    want = rc["results"][0]["residual_fro_mean"][1:]
    assert torch.allclose(torch.tensor(ph["models"][0]["residual_stack"]), torch.tensor(want))
