"""Paired initialisation (gpam.models.paired_init_): shared parameters bit-identical across every
variant under one seed, variant options leave the others alone, same distributions as plain
construction, and the compare report's pairing figures."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
import torch
from torch import nn

import gpam
from gpam.compare.pairing import pairing_rows, pairing_text
from gpam.compare.stats import pairing_gain
from gpam.models import LMConfig, Seq2SeqConfig, Seq2SeqTransformer, TransformerLM, paired_init_
from gpam.models.paired import init_rules
from gpam.nn import MultiheadAttention
from gpam.nn.dagpam import DagpamParams
from gpam.nn.seeded_init import linear_weight, orthogonal_heads, randn_scaled, stream_seed

# every variant in every layer (attention_layers="all": cog would otherwise keep softmax)
LM = dict(vocab_size=29, d_model=32, n_layers=2, n_heads=4, attention_layers="all")
S2S = dict(src_vocab_size=23, d_model=32, n_encoder_layers=1, n_decoder_layers=1, n_heads=4)


def lm(variant: str, seed: int | None = 0, **kw) -> TransformerLM:
    return TransformerLM(LMConfig(**LM, attention=variant, **kw), seed=seed)


def s2s(variant: str, seed: int = 0, **kw) -> Seq2SeqTransformer:
    att = dict(encoder_attention=variant, decoder_attention=variant, cross_attention=variant)
    return Seq2SeqTransformer(Seq2SeqConfig(**S2S, **att, attention_layers="all", **kw), seed=seed)


def shared(a: nn.Module, b: nn.Module) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    pb = dict(b.named_parameters())
    return [(n, p, pb[n]) for n, p in a.named_parameters() if n in pb and pb[n].shape == p.shape]


def random_names(model: nn.Module) -> set[str]:
    return {n for n, r in init_rules(model).items() if r is not None}


@pytest.mark.parametrize("build", [lm, s2s], ids=["lm", "seq2seq"])
def test_shared_parameters_bit_identical_across_every_variant(build):
    models = {v: build(v) for v in gpam.VARIANTS}
    ref = models["softmax"]
    n_ref = len(list(ref.named_parameters()))
    n_attn = sum(isinstance(m, MultiheadAttention) for m in ref.modules())
    for v, m in models.items():
        pairs = shared(m, ref)
        # diff2's query projection makes 2H heads: only its weight and bias differ in shape
        assert len(pairs) == n_ref - (2 * n_attn if v == "diff2" else 0), v
        for name, p, q in pairs:
            assert torch.equal(p, q), f"{v}: {name}"


@pytest.mark.parametrize("build", [lm, s2s], ids=["lm", "seq2seq"])
def test_different_seeds_differ_in_every_random_parameter(build):
    a, b = build("dagpam", 0), build("dagpam", 1)
    pb = dict(b.named_parameters())
    names = random_names(a)
    assert names
    for n, p in a.named_parameters():
        if n in names:
            assert not torch.equal(p, pb[n]), n


@pytest.mark.parametrize(
    "options",
    [
        dict(neg_query="full"),
        dict(lambda_mode="token"),
        dict(lambda_mode="head", lambda_param="softplus"),
        dict(neg_init="neg_identity"),
        dict(neg_query="relu_linear"),
    ],
)
def test_an_option_of_one_variant_leaves_shared_parameters_unchanged(options):
    plain, changed, soft = lm("dagpam"), lm("dagpam", **options), lm("softmax")
    for other in (plain, soft):
        for name, p, q in shared(changed, other):
            if name.endswith("neg_weight") and "neg_init" in options:
                continue  # the option is this parameter's own
            assert torch.equal(p, q), name


def test_plain_construction_unchanged_and_seed_independent_of_global_stream():
    torch.manual_seed(0)
    plain = TransformerLM(LMConfig(**LM, attention="dagpam"))
    torch.manual_seed(0)
    again = TransformerLM(LMConfig(**LM, attention="dagpam"))
    assert all(torch.equal(p, q) for _, p, q in shared(plain, again))
    torch.manual_seed(123)
    x = lm("dagpam", 5)
    torch.manual_seed(7)
    y = paired_init_(TransformerLM(LMConfig(**LM, attention="dagpam")), 5)
    assert all(torch.equal(p, q) for _, p, q in shared(x, y))
    # the paired model is not the plain one (plain draws in construction order)
    assert not torch.equal(plain.tok_emb.weight, lm("dagpam", 0).tok_emb.weight)


def test_tied_weights_stay_tied():
    m = lm("softmax")
    assert m.lm_head.weight is m.tok_emb.weight


@pytest.mark.parametrize("variant", gpam.VARIANTS)
def test_deterministic_parameters_equal_plain_construction(variant):
    torch.manual_seed(0)
    plain = TransformerLM(LMConfig(**LM, attention=variant, lambda_mode="fixed"))
    paired = lm(variant)
    rules = init_rules(paired)
    pp = dict(plain.named_parameters())
    for n, p in paired.named_parameters():
        if rules[n] is None:
            assert torch.equal(p, pp[n]), n


def _pooled(build, variant: str, seeds, **kw) -> dict[str, np.ndarray]:
    out: dict[str, list[np.ndarray]] = {}
    for s in seeds:
        if build == "plain":
            torch.manual_seed(s)
            m = TransformerLM(LMConfig(**LM, attention=variant, **kw))
        else:
            m = lm(variant, s, **kw)
        for n, p in m.named_parameters():
            out.setdefault(n, []).append(p.detach().double().flatten().numpy())
    return {n: np.concatenate(v) for n, v in out.items()}


@pytest.mark.parametrize(
    "variant,kw",
    [("dagpam", {}), ("diff", {}), ("diff2", {}), ("gated", {}), ("dagpam", {"neg_query": "full"})],
)
def test_same_distribution_as_plain_construction(variant, kw):
    seeds = range(6)
    plain, paired = _pooled("plain", variant, seeds, **kw), _pooled("paired", variant, seeds, **kw)
    assert plain.keys() == paired.keys()
    for n in plain:
        a, b = plain[n], paired[n]
        if np.ptp(a) == 0:
            assert np.array_equal(a, b), n  # deterministic
            continue
        tol = 4.0 / math.sqrt(a.size)  # a few standard errors of a std estimate
        assert abs(b.std() / a.std() - 1) < tol + 0.02, n
        assert abs(b.mean() - a.mean()) < 4 * a.std() / math.sqrt(a.size) + 1e-12, n
        # uniform laws: the same bounds
        assert np.abs(b).max() <= np.abs(a).max() * 1.5 + 1e-12, n


def test_rules_reproduce_the_old_draws_for_the_same_generator_state():
    # nn.Linear's default weight
    torch.manual_seed(3)
    old = nn.Linear(16, 8).weight.detach()
    new = torch.empty(8, 16)
    linear_weight()(new, torch.Generator().manual_seed(3))
    assert torch.equal(old, new)
    # daGPAM's per-head orthogonal negative-query map
    torch.manual_seed(4)
    mha = MultiheadAttention(32, 4, attention="dagpam")
    assert isinstance(mha.variant, DagpamParams)
    torch.manual_seed(4)
    old_rot = mha.variant._rotation(4, 8, None)
    new_rot = torch.empty(4, 8, 8)
    orthogonal_heads()(new_rot, torch.Generator().manual_seed(4))
    assert torch.equal(old_rot, new_rot)
    # diff's lambda vectors: randn(d) * 0.1
    torch.manual_seed(5)
    old_lam = torch.randn(8) * 0.1
    new_lam = torch.empty(8)
    randn_scaled(0.1)(new_lam, torch.Generator().manual_seed(5))
    assert torch.equal(old_lam, new_lam)


def test_neg_identity_full_starts_as_minus_the_query_projection():
    m = lm("dagpam", neg_query="full", neg_init="neg_identity")
    for block in m.blocks:
        assert torch.equal(block.self_attn.q_neg_proj.weight, -block.self_attn.q_proj.weight)


def test_stream_seed_is_stable_and_checked():
    assert stream_seed(0, "a") == stream_seed(0, "a") != stream_seed(1, "a")
    assert stream_seed(0, "a") != stream_seed(0, "b")
    digest = hashlib.sha256(b"gpam.paired_init/0/tok_emb.weight").digest()
    assert stream_seed(0, "tok_emb.weight") == int.from_bytes(digest[:8], "little") % 2**63
    with pytest.raises(TypeError, match="seed"):
        paired_init_(lm("softmax", None), "0")  # type: ignore[arg-type]


def test_unknown_parameter_is_named():
    model = nn.Sequential(nn.Linear(4, 4), nn.Conv1d(2, 2, 3))
    with pytest.raises(ValueError, match=r"1\.weight"):
        paired_init_(model, 0)


def test_pairing_gain_known_answers():
    base = [1.0, 2.0, 4.0, 7.0]
    g = pairing_gain([b + 0.5 for b in base], base)
    assert g["pearson_r"] == pytest.approx(1.0)
    assert g["paired_std"] == pytest.approx(0.0, abs=1e-12)
    assert g["unpaired_std"] == pytest.approx(math.sqrt(2) * np.std(base, ddof=1))
    anti = pairing_gain([-b for b in base], base)
    assert anti["pearson_r"] == pytest.approx(-1.0)
    assert anti["paired_std"] == pytest.approx(2 * np.std(base, ddof=1))
    assert anti["ratio"] == pytest.approx(math.sqrt(2))
    with pytest.raises(ValueError, match="same length"):
        pairing_gain([1.0], [1.0, 2.0])


def test_pairing_section_of_the_report():
    runs = {}
    for lab, shift in (("softmax", 0.0), ("dagpam", -0.2)):
        for s, v in enumerate([12.0, 12.5, 11.8]):
            runs[f"{lab}_{s}"] = dict(label=lab, seed=s, status="done", final_metric=v + shift)
    runs["dagpam_9"] = dict(label="dagpam", seed=9, status="done", final_metric=99.0)  # not in grid
    results = {
        "config": {"seeds": [0, 1, 2]},
        "runs": runs,
        "summary": {
            "metric": "perplexity",
            "variants": [{"label": "softmax"}, {"label": "dagpam"}],
        },
    }
    (row,) = pairing_rows(results)
    assert row["label"] == "dagpam" and row["n"] == 3
    assert row["pearson_r"] == pytest.approx(1.0) and row["paired_std"] == pytest.approx(0.0)
    text = "\n".join(pairing_text(results))
    assert "## Pairing" in text and "| dagpam | 3 | 1 |" in text


class _Built(Exception):
    def __init__(self, model: nn.Module) -> None:
        self.model = model


def test_compare_builds_paired_models_and_hashes_the_init_scheme(tmp_path, monkeypatch):
    import gpam.train.loop
    from gpam.compare import runner
    from gpam.compare.grid import CompareConfig, grid
    from gpam.compare.kinds import as_kind
    from gpam.data.synthetic import make_task

    config = CompareConfig(variants=["softmax", "dagpam", "diff"], seeds=[3])
    kind = as_kind(make_task("recall"))
    specs = {s.label: s for s in grid(config, None)}

    def stop(model, *args, **kwargs):
        raise _Built(model)

    monkeypatch.setattr(gpam.train.loop, "train_loop", stop)
    models = {}
    for label, spec in specs.items():
        with pytest.raises(_Built) as built:
            runner.train_one(config, kind, spec, tmp_path / label, "h")
        models[label] = built.value.model
    for label in ("dagpam", "diff"):
        pairs = shared(models[label], models["softmax"])
        assert pairs and all(torch.equal(p, q) for _, p, q in pairs), label
    h = runner.run_hash(config, kind, specs["dagpam"])
    monkeypatch.setattr(runner, "INIT_SCHEME", "another")
    assert runner.run_hash(config, kind, specs["dagpam"]) != h
