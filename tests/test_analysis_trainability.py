"""`gpam analyze trainability`: the model, the pairing, the unigram loss, the "trains" rule,
resume, and the CLI, each with a known answer."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from gpam.analysis import trainability_run
from gpam.analysis.stacks import VariantSpec, make_attention
from gpam.analysis.trainability import trainability
from gpam.analysis.trainability_config import (
    TrainabilityConfig,
    builtin_corpus,
    load_corpus,
    unigram_loss,
)
from gpam.analysis.trainability_derive import paired, smallest_skip, summarize, trains
from gpam.analysis.trainability_model import attention_seed, build_model
from gpam.cli.main import main

TINY = {
    "steps": 4,
    "batch": 2,
    "length": 12,
    "width": 16,
    "heads": 2,
    "warmup": 1,
    "eval_tokens": 96,
    "probe_batch": 2,
    "depths": [2],
    "seeds": [0, 1],
}
MODEL = {"vocab": 11, "length": 7, "width": 8, "heads": 2, "depth": 2}


# ------------------------------------------------------------------------------- the model
def _hand_attention(mha, x: torch.Tensor) -> torch.Tensor:
    """Causal multi-head softmax attention from the layer's weights (no gpam code)."""
    b, n, e = x.shape
    h = mha.num_heads

    def heads(t: torch.Tensor) -> torch.Tensor:
        return t.view(b, n, h, e // h).transpose(1, 2)

    q, k, v = (heads(F.linear(x, p.weight)) for p in (mha.q_proj, mha.k_proj, mha.v_proj))
    s = q @ k.transpose(-1, -2) / math.sqrt(e // h)
    s = s.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
    o = (s.softmax(-1) @ v).transpose(1, 2).reshape(b, n, e)
    return F.linear(o, mha.out_proj.weight)


def _hand_forward(model, ids: torch.Tensor, skip: float) -> torch.Tensor:
    """The model written out by hand: pre-norm blocks with skip weight ``skip``."""
    x = model.embed.weight[ids] + model.pos[: ids.shape[1]]
    for blk in model.blocks:
        y = F.rms_norm(x, (x.shape[-1],), blk.norm1.weight)
        x = skip * x + _hand_attention(blk.attn, y)
        lin1, lin2 = blk.mlp[0], blk.mlp[2]
        z = F.rms_norm(x, (x.shape[-1],), blk.norm2.weight)
        x = x + F.linear(F.gelu(F.linear(z, lin1.weight, lin1.bias)), lin2.weight, lin2.bias)
    out = F.rms_norm(x, (x.shape[-1],), model.norm_f.weight)
    return F.linear(out, model.head.weight, model.head.bias)


@pytest.mark.parametrize("skip", [1.0, 0.0, 0.3])
def test_skip_block_equals_hand_built_pre_norm_block(skip):
    model = build_model(VariantSpec("softmax"), skip_weight=skip, qk_gain=1.0, seed=3, **MODEL)
    model = model.double()
    with torch.no_grad():  # non-trivial norm weights and biases, so they are really used
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    ids = torch.randint(0, MODEL["vocab"], (2, 7), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(model(ids), _hand_forward(model, ids, skip), rtol=1e-10, atol=1e-10)


def test_skip_weight_one_differs_from_zero():
    ids = torch.arange(7)[None] % MODEL["vocab"]
    out = [
        build_model(VariantSpec("softmax"), skip_weight=a, qk_gain=1.0, seed=0, **MODEL)(ids)
        for a in (0.0, 1.0)
    ]
    assert not torch.allclose(out[0], out[1])


def test_qk_gain_one_leaves_the_library_initialisation_untouched():
    spec = VariantSpec("dagpam", lam_neg=1.0, neg_query="full")
    model = build_model(spec, skip_weight=0.5, qk_gain=1.0, seed=5, **MODEL)
    for i, blk in enumerate(model.blocks):
        torch.manual_seed(attention_seed(5, i))
        ref = make_attention(spec, MODEL["width"], MODEL["heads"], layer_idx=i, bias=False)
        for name, t in ref.state_dict().items():
            assert torch.equal(blk.attn.state_dict()[name], t), name


def test_qk_gain_scales_q_k_and_negative_query_only():
    spec = VariantSpec("dagpam", lam_neg=1.0, neg_query="full")
    base = build_model(spec, skip_weight=0.5, qk_gain=1.0, seed=5, **MODEL).state_dict()
    gained = build_model(spec, skip_weight=0.5, qk_gain=2.5, seed=5, **MODEL).state_dict()
    scaled = ("q_proj.weight", "k_proj.weight", "q_neg_proj.weight")
    for name, t in base.items():
        factor = 2.5 if name.endswith(scaled) and ".attn." in name else 1.0
        torch.testing.assert_close(gained[name], factor * t, rtol=0, atol=0)


def test_same_seed_shares_weights_across_variants_and_cells():
    soft = build_model(VariantSpec("softmax"), skip_weight=0.0, qk_gain=1.0, seed=2, **MODEL)
    dag = build_model(
        VariantSpec("dagpam", lam_neg=1.0), skip_weight=1.0, qk_gain=1.0, seed=2, **MODEL
    )
    other = build_model(VariantSpec("softmax"), skip_weight=0.0, qk_gain=1.0, seed=3, **MODEL)
    s, d, o = soft.state_dict(), dag.state_dict(), other.state_dict()
    for name, t in s.items():
        assert torch.equal(d[name], t), name  # every softmax weight exists in daGPAM, equal
    assert not torch.equal(o["embed.weight"], s["embed.weight"])


# ----------------------------------------------------------------------------- unigram loss
def test_unigram_loss_of_a_toy_corpus():
    # training "aab": counts a=2, b=1; add-one over {a, b}: p(a) = 3/5, p(b) = 2/5
    train, targets = torch.tensor([0, 0, 1]), torch.tensor([0, 1])
    expected = -(math.log(3 / 5) + math.log(2 / 5)) / 2
    assert unigram_loss(train, targets) == pytest.approx(expected, rel=1e-12)
    # an id of the support never seen in training still gets 1 / total
    assert unigram_loss(train, torch.tensor([2]), support=[0, 1, 2]) == pytest.approx(math.log(6))
    with pytest.raises(ValueError, match="support"):
        unigram_loss(train, torch.tensor([5]), support=[0, 1])


def test_builtin_corpus_is_deterministic_and_loads():
    assert builtin_corpus() == builtin_corpus()
    c = load_corpus(TrainabilityConfig(length=16))
    assert c.name == "builtin" and c.train_ids.numel() > 40_000 and c.val_ids.numel() > 4_000


# ------------------------------------------------------------------------- the trains rule
def test_trains_rule_on_synthetic_losses():
    assert trains([2.0, 2.1, 1.9], unigram=3.0, margin=0.05)
    assert not trains([2.95, 2.97, 2.99], unigram=3.0, margin=0.05)  # inside the margin
    assert not trains([1.0, 3.0, 2.6], unigram=3.0, margin=0.05)  # gap 0.8 < std 1.06
    assert trains([1.0, 3.0, 2.6], unigram=3.0, margin=0.0) is False
    assert trains([2.9], unigram=3.0, margin=0.05)  # one seed: the margin alone
    assert not trains([2.0, None], unigram=3.0, margin=0.05)  # a missing seed never trains


def _record(label: str, a: float, seed: int, loss: float, variant: str | None = None) -> dict:
    layer = {"residual_stack": [0.5], "residual_model": [0.5], "jacobian_rel_mean": 1.0}
    return {
        "label": label,
        "fingerprint": {
            "variant": variant or label,
            "lam_neg": None,
            "neg_query": None,
            "depth": 4,
            "qk_gain": 1.0,
            "skip_weight": a,
            "seed": seed,
        },
        "val_loss": loss,
        "stopped": "steps",
        "q_grad": {"first": 1.0, "last": 0.5, "min": 0.5, "max": 1.0},
        "init": layer,
        "final": layer,
    }


def test_smallest_skip_weight_and_paired_difference_to_softmax():
    unigram = 3.0
    recs = []
    for s, (noise) in enumerate([0.0, 0.1, -0.1]):
        recs += [
            _record("softmax", 0.0, s, 3.0 + noise),
            _record("softmax", 0.5, s, 2.9 + noise),
            _record("softmax", 1.0, s, 2.0 + noise),
            _record("cog", 0.0, s, 2.5 + noise / 2),
            _record("cog", 0.5, s, 2.2 + noise),
            _record("cog", 1.0, s, 2.0 + noise),
        ]
    rows = summarize(recs, unigram, margin=0.05)
    by = {(r["label"], r["skip_weight"]): r for r in rows}
    assert [by[("softmax", a)]["trains"] for a in (0.0, 0.5, 1.0)] == [False, False, True]
    assert by[("cog", 0.0)]["rel_skip1"] == pytest.approx(2.5 / 2.0)
    assert by[("cog", 0.0)]["rel_unigram"] == pytest.approx(2.5 / 3.0)
    small = {s["label"]: s for s in smallest_skip(rows)}
    assert small["softmax"]["smallest_skip_weight"] == 1.0
    assert small["cog"]["smallest_skip_weight"] == 0.0
    assert small["cog"]["softmax_smallest_skip_weight"] == 1.0
    diff = small["cog"]["vs_softmax_there"]  # cog - softmax at a = 0: -0.5, -0.55, -0.45
    assert diff["mean"] == pytest.approx(-0.5)
    half = 4.302652729911275 * 0.05 / math.sqrt(3)  # t(0.975, 2) * std / sqrt(n)
    assert diff["ci_low"] == pytest.approx(-0.5 - half) and diff["ci_high"] == pytest.approx(
        -0.5 + half
    )


def test_paired_needs_two_complete_pairs():
    assert paired([1.0], [2.0])["ci_low"] is None
    assert paired([1.0, None], [2.0, 2.0])["mean"] is None


# ----------------------------------------------------------------------------- grid, resume
def test_dagpam_at_lam_neg_zero_equals_softmax_cell_by_cell():
    cfg = TrainabilityConfig(
        variants=["softmax", "dagpam"],
        lam_neg=[0.0],
        skip_weights=[0.0, 1.0],
        qk_gains=[3.0],
        **TINY,
    )
    res = trainability(cfg, show_progress=False)
    rows = {(r["label"], r["qk_gain"], r["skip_weight"]): r for r in res["summary"]}
    keys = ("val_loss_mean", "q_grad_first", "q_grad_last", "residual_stack_final")
    keys += ("jacobian_rel_init", "jacobian_rel_final")
    for a in (0.0, 1.0):
        soft, dag = rows[("softmax", 3.0, a)], rows[("dagpam lam_neg=0", 3.0, a)]
        for k in keys:
            assert dag[k] == pytest.approx(soft[k], rel=1e-4, abs=1e-6), (a, k)
    losses = [rows[("softmax", 3.0, a)]["val_loss_mean"] for a in (0.0, 1.0)]
    assert losses[0] != pytest.approx(losses[1], rel=1e-4)  # the comparison can fail


class Killed(Exception):
    pass


def test_resume_of_a_killed_grid_reruns_only_unfinished_cells(tmp_path, monkeypatch):
    cfg = TrainabilityConfig(variants=["softmax"], skip_weights=[0.0, 1.0], qk_gains=[1.0], **TINY)
    corpus = load_corpus(cfg)
    finished: list[str] = []

    def kill_after_two(rec: dict) -> None:
        finished.append(rec["name"])
        if len(finished) == 2:
            raise Killed

    with pytest.raises(Killed):
        trainability_run.run_grid(
            cfg, corpus, tmp_path, show_progress=False, after_cell=kill_after_two
        )
    assert len(list((tmp_path / "cells").glob("*.json"))) == 2
    trained: list[str] = []
    real = trainability_run.train_cell

    def counting(cell, *args, **kwargs):
        trained.append(cell.name())
        return real(cell, *args, **kwargs)

    monkeypatch.setattr(trainability_run, "train_cell", counting)
    records, reused = trainability_run.run_grid(
        cfg, corpus, tmp_path, resume=True, show_progress=False
    )
    names = [c.name() for c in trainability_run.grid(cfg)]
    assert reused == 2 and sorted(trained) == sorted(set(names) - set(finished))
    assert [r["name"] for r in records] == names
    # changed settings: no cell file matches, every cell is trained again
    trained.clear()
    cfg2 = TrainabilityConfig(
        variants=["softmax"], skip_weights=[0.0, 1.0], qk_gains=[1.0], **{**TINY, "steps": 3}
    )
    _, reused = trainability_run.run_grid(cfg2, corpus, tmp_path, resume=True, show_progress=False)
    assert reused == 0 and len(trained) == len(names)


# ------------------------------------------------------------------------------------ CLI
def test_cli_writes_json_plots_and_report(tmp_path, capsys):
    out = tmp_path / "t"
    argv = ["analyze", "trainability", "--variants", "softmax,cog", "--skip-weights", "0,1"]
    argv += ["--qk-gains", "1,4", "--depths", "1", "--seeds", "0,1", "--steps", "3"]
    argv += ["--batch", "2", "--length", "12", "--width", "16", "--heads", "2"]
    argv += ["--eval-tokens", "96", "--out", str(out)]
    assert main(argv) == 0
    data = json.loads((out / "trainability.json").read_text())
    assert {"config", "corpus", "rule", "cells", "summary", "smallest_skip", "timing"} <= set(data)
    assert len(data["cells"]) == 2 * 2 * 2 * 2 and len(data["summary"]) == 8
    assert (out / "trainability_heatmap_d1.png").stat().st_size > 0
    assert (out / "trainability_loss_d1.png").stat().st_size > 0
    report = (out / "report.md").read_text()
    assert "unigram loss" in report and "softmax (depth 1)" in report
    assert main([*argv, "--resume"]) == 0
    assert json.loads((out / "trainability.json").read_text())["timing"]["reused"] == 16


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--qk-gains", "4,1"], "qk_gains must be strictly increasing"),
        (["--skip-weights=-1,1"], "skip_weights must be >= 0"),
        (["--variants", "nope"], "unknown variant"),
        (["--width", "10", "--heads", "4"], "divisible by heads"),
        (["--depths", "2,2"], "depths must not repeat"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    assert main(["analyze", "trainability", *args, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_text_too_short_names_the_argument(tmp_path):
    f = tmp_path / "short.txt"
    f.write_text("abc")
    with pytest.raises(ValueError, match="text: .* is too short"):
        load_corpus(TrainabilityConfig(text=str(f), length=16))


def test_cli_help_defaults_are_the_configs_and_unset_options_take_them() -> None:
    """The parser imports no torch, so its help states TrainabilityConfig's defaults in text:
    they must agree, and an option left out must reach the library as its default."""
    from gpam.analysis.trainability_config import TrainabilityConfig
    from gpam.cli.analyze_trainability import HELP_DEFAULTS, trainability_kwargs
    from gpam.cli.main import build_parser

    cfg = TrainabilityConfig()
    for name, text in HELP_DEFAULTS.items():
        value = getattr(cfg, name)
        shown = (
            ",".join(f"{x:g}" if isinstance(x, float) else str(x) for x in value)
            if (isinstance(value, (list, tuple)))
            else (f"{value:g}" if isinstance(value, float) else str(value))
        )
        assert shown == text, name
    args = build_parser().parse_args(["analyze", "trainability"])
    assert trainability_kwargs(args) == {}
    args = build_parser().parse_args(
        ["analyze", "trainability", "--d-model", "16", "--heads", "2", "--batch-size", "3"]
    )
    assert trainability_kwargs(args) == {"width": 16, "heads": 2, "batch": 3}


def test_loss_plot_gives_each_variant_its_fixed_colour(tmp_path, monkeypatch) -> None:
    """Issue 20 item 21 holds here too: softmax and daGPAM lines get their fixed colours
    (a tab20 cycle gave them two shades of blue)."""
    import matplotlib.axes

    from gpam.analysis import plots
    from gpam.analysis.trainability_outputs import loss_plot

    seen: dict[str, str] = {}
    real = matplotlib.axes.Axes.errorbar

    def spy(self, *a, **kw):  # type: ignore[no-untyped-def]
        seen[kw["label"]] = kw["color"]
        return real(self, *a, **kw)

    monkeypatch.setattr(matplotlib.axes.Axes, "errorbar", spy)
    rows = [
        {"label": lab, "variant": var, "depth": 2, "qk_gain": 1.0, "skip_weight": a,
         "val_loss_mean": 3.0 - a, "val_loss_std": 0.01}
        for lab, var in (("softmax", "softmax"), ("dagpam lam_neg=1", "dagpam"))
        for a in (0.0, 1.0)
    ]  # fmt: skip
    loss_plot(rows, 2, 3.3, tmp_path / "l.png")
    assert seen == {"softmax": plots.variant_colour("softmax"),
                    "dagpam lam_neg=1": plots.variant_colour("dagpam")}  # fmt: skip
