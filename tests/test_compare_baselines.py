"""Issue 18 item 4: the softmax-2h baseline and --match-params sized to every setting."""

from __future__ import annotations

import pytest

from gpam.compare.grid import MATCHED, SOFTMAX_2H, CompareConfig, grid
from gpam.compare.kinds import as_kind
from gpam.compare.runner import _n_params, matched_d_ffs
from gpam.data.synthetic import make_task
from gpam.nn.multihead import MultiheadAttention


def _cfg(**kw) -> CompareConfig:
    base = dict(task="copy", variants=["softmax"], seeds=[0, 1], d_model=16, n_layers=1, n_heads=2)
    base.update(kw)
    return CompareConfig(**base)


@pytest.fixture
def kind():
    return as_kind(make_task("copy", length=4, n_symbols=4))


def test_softmax_2h_same_parameters_twice_the_heads(kind) -> None:
    cfg = _cfg(variants=["softmax", SOFTMAX_2H])
    cfg.validate()
    soft, two = (s for s in grid(cfg) if s.seed == 0)
    assert two.label == SOFTMAX_2H and two.attention == "softmax"
    mc = kind.model_config(cfg, two)
    assert mc.n_heads == 4 and mc.d_model == 16 and kind.model_config(cfg, soft).n_heads == 2
    assert _n_params(kind, cfg, two) == _n_params(kind, cfg, soft)
    heads = [m.num_heads for m in kind.build(mc).modules() if isinstance(m, MultiheadAttention)]
    assert heads == [4]  # twice the attention maps of softmax's 2 heads, one layer


def test_match_params_one_matched_softmax_per_parameter_count(kind) -> None:
    cfg = _cfg(variants=["softmax", "dagpam", "dagpam2=dagpam+lam_neg=1.0", "diff2"])
    cfg.match_params = True
    ffs = matched_d_ffs(cfg, kind)
    dag = next(s for s in grid(cfg) if s.label == "dagpam")
    diff2 = next(s for s in grid(cfg) if s.label == "diff2")
    n_dag, n_diff2 = _n_params(kind, cfg, dag), _n_params(kind, cfg, diff2)
    assert n_dag != n_diff2  # two distinct counts -> two matched rows, dagpam2 shares dagpam's
    assert set(ffs) == {f"{MATCHED}-dagpam", f"{MATCHED}-diff2"}
    specs = grid(cfg, ffs)
    labels = {s.label for s in specs}
    assert {f"{MATCHED}-dagpam", f"{MATCHED}-diff2"} <= labels
    for lab, target in ((f"{MATCHED}-dagpam", n_dag), (f"{MATCHED}-diff2", n_diff2)):
        s = next(s for s in specs if s.label == lab)
        n = _n_params(kind, cfg, s)
        assert s.attention == "softmax" and s.d_ff == ffs[lab]
        # the smallest width reaching the target
        assert n >= target
        s.d_ff -= 1
        assert _n_params(kind, cfg, s) < target


def test_match_params_single_count_keeps_plain_label(kind) -> None:
    cfg = _cfg(variants=["softmax", "diff2"], match_params=True)
    assert list(matched_d_ffs(cfg, kind)) == [MATCHED]


def test_match_params_nothing_to_match(kind) -> None:
    cfg = _cfg(variants=["softmax", SOFTMAX_2H], match_params=True)
    with pytest.raises(ValueError, match="match_params"):
        matched_d_ffs(cfg, kind)


def test_grid_end_to_end_rows_and_report(tmp_path) -> None:
    from gpam.compare.runner import run_compare
    from gpam.compare.settings import TrainSettings

    cfg = _cfg(
        variants=["softmax", SOFTMAX_2H, "dagpam", "diff2"],
        seeds=[0],
        match_params=True,
        train=TrainSettings(steps=2, batch_size=4, eval_every=2, eval_batches=1, eval_batch_size=4),
    )
    res = run_compare(cfg, make_task("copy", length=4, n_symbols=4), tmp_path, progress=False)
    rows = {r["label"]: r for r in res["summary"]["variants"]}
    assert set(rows) == {
        "softmax",
        SOFTMAX_2H,
        "dagpam",
        "diff2",
        f"{MATCHED}-dagpam",
        f"{MATCHED}-diff2",
    }
    assert rows[SOFTMAX_2H]["params"] == rows["softmax"]["params"]
    assert rows[SOFTMAX_2H]["overhead_pct"] == 0.0
    assert rows[f"{MATCHED}-diff2"]["params"] >= rows["diff2"]["params"]
    assert res["runs"][f"{SOFTMAX_2H}/seed=0"]["model_config"]["n_heads"] == 4
    report = (tmp_path / "report.md").read_text()
    assert f"{MATCHED}-diff2: softmax with feed-forward width" in report
    assert "softmax-2h: softmax with twice the heads" in report
