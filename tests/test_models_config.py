"""Model configs: JSON round trip, defaults, layer patterns and clear errors on bad values."""

from __future__ import annotations

import json

import pytest

from gpam.models import LMConfig, Seq2SeqConfig


def test_lm_config_json_round_trip() -> None:
    cfg = LMConfig(
        65, d_model=64, n_layers=3, attention="coda", attention_layers=[0, -1],
        attn_kwargs={"coda": {"alpha": 2.0}}, positions="rotary", norm="post",
    )  # fmt: skip
    data = json.loads(json.dumps(cfg.to_dict()))
    back = LMConfig.from_dict(data)
    assert back == cfg
    assert back.d_ff == 256  # None resolves to 4 * d_model


def test_seq2seq_config_json_round_trip() -> None:
    cfg = Seq2SeqConfig(
        100, 120, d_model=32, encoder_attention="softmax", cross_attention="cog",
        affine=False, lam_pos=1.2, lam_neg=0.3, learnable_lambda=True, tie_embeddings="none",
    )  # fmt: skip
    back = Seq2SeqConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg
    assert Seq2SeqConfig(50).tgt_vocab_size == 50
    assert Seq2SeqConfig(50).norm == "post"  # the paper's NMT baselines


def test_new_lambda_and_negative_query_fields() -> None:
    cfg = LMConfig(30, lambda_mode="token", neg_query="relu_linear", neg_init="neg_identity")
    back = LMConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg and back.lambda_mode == "token" and not back.learnable_lambda
    # a config.json written before these fields existed still loads, with the old meaning
    old = {k: v for k, v in cfg.to_dict().items() if k not in ("lambda_mode", "neg_init")}
    old.update(neg_query="linear", learnable_lambda=True)
    legacy = LMConfig.from_dict(old)
    assert legacy.lambda_mode == "head" and legacy.learnable_lambda
    assert legacy.neg_init == "orthogonal"
    assert LMConfig(30, lambda_mode="head").learnable_lambda
    s2s = Seq2SeqConfig(20, lambda_mode="token", neg_init="neg_identity", cross_attention="diff2")
    assert Seq2SeqConfig.from_dict(json.loads(json.dumps(s2s.to_dict()))) == s2s
    with pytest.raises(ValueError, match="lambda_mode"):
        LMConfig(30, lambda_mode="layer")
    with pytest.raises(ValueError, match="lambda_mode"):
        LMConfig(30, lambda_mode="token", learnable_lambda=True)
    with pytest.raises(ValueError, match="neg_init"):
        LMConfig(30, neg_init="eye")
    import gpam

    for variant in gpam.VARIANTS:  # every registered variant is a valid config choice
        assert LMConfig(30, attention=variant).attention == variant


def test_from_dict_rejects_unknown_fields_and_wrong_type() -> None:
    data = LMConfig(10).to_dict()
    with pytest.raises(ValueError, match="n_layer"):
        LMConfig.from_dict({**data, "n_layer": 3})
    with pytest.raises(ValueError, match="model_type"):
        LMConfig.from_dict({**data, "model_type": "seq2seq"})
    assert LMConfig.from_dict({**data, "model_type": "lm"}) == LMConfig(10)


def test_layer_patterns() -> None:
    cog = LMConfig(10, n_layers=4, attention="cog")
    assert [cog.variant_for("cog", i, 4) for i in range(4)] == ["softmax", "cog", "cog", "softmax"]
    dag = LMConfig(10, n_layers=4)
    assert [dag.variant_for("dagpam", i, 4) for i in range(4)] == ["dagpam"] * 4
    allcog = LMConfig(10, n_layers=3, attention="cog", attention_layers="all")
    assert [allcog.variant_for("cog", i, 3) for i in range(3)] == ["cog"] * 3
    listed = LMConfig(10, n_layers=4, attention_layers=[1, -1])
    got = [listed.variant_for("dagpam", i, 4) for i in range(4)]
    assert got == ["softmax", "dagpam", "softmax", "dagpam"]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"vocab_size": 0}, "vocab_size"),
        ({"d_model": 30, "n_heads": 4}, "d_model"),
        ({"attention": "flash"}, "attention"),
        ({"norm": "middle"}, "norm"),
        ({"positions": "alibi"}, "positions"),
        ({"dropout": 1.0}, "dropout"),
        ({"lam_neg": -0.1}, "lam_neg"),
        ({"lam_pos": 1.5}, "lam_pos"),
        ({"affine": False}, "lam_pos"),
        ({"neg_query": "square"}, "neg_query"),
        ({"kv_heads": 3}, "kv_heads"),
        ({"attention_layers": "outer"}, "attention_layers"),
        ({"attention_layers": [7]}, "attention_layers"),
        ({"attn_kwargs": {"alpha": 2.0}}, "attn_kwargs"),
        ({"attention": "diff", "n_heads": 1, "d_model": 8}, "diff"),
        ({"positions": "rotary", "d_model": 12, "n_heads": 4}, "rotary"),
        ({"lambda_param": "exp"}, "lambda_param"),
    ],
)
def test_lm_config_errors_name_the_field(kwargs: dict, field: str) -> None:
    args = {"vocab_size": 10, **kwargs}
    with pytest.raises(ValueError, match=field):
        LMConfig(**args)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"n_layers": 2.5}, "n_layers"), ({"tie_embeddings": "yes"}, "tie_embeddings")],
)
def test_lm_config_type_errors(kwargs: dict, field: str) -> None:
    with pytest.raises(TypeError, match=field):
        LMConfig(10, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"tgt_vocab_size": 20, "tie_embeddings": "all"}, "tie_embeddings"),
        ({"tie_embeddings": "encoder"}, "tie_embeddings"),
        ({"cross_attention": "nope"}, "cross_attention"),
        ({"encoder_attention": "nope"}, "encoder_attention"),
        ({"n_decoder_layers": 0}, "n_decoder_layers"),
        ({"src_vocab_size": -1}, "src_vocab_size"),
    ],
)
def test_seq2seq_config_errors_name_the_field(kwargs: dict, field: str) -> None:
    args = {"src_vocab_size": 10, **kwargs}
    with pytest.raises(ValueError, match=field):
        Seq2SeqConfig(**args)


def test_attention_layers_are_checked_in_every_stack() -> None:
    # [3] exists in a 4-layer encoder but not in a 2-layer decoder: refused, naming the decoder
    # (it used to be checked against the longest stack only, leaving the decoder all-softmax)
    with pytest.raises(ValueError, match=r"attention_layers index 3 .*decoder \(2 layers\)"):
        Seq2SeqConfig(10, n_encoder_layers=4, n_decoder_layers=2, attention_layers=[3])
    with pytest.raises(ValueError, match=r"attention_layers index -3 .*decoder"):
        Seq2SeqConfig(10, n_encoder_layers=4, n_decoder_layers=2, attention_layers=[-3])
    with pytest.raises(ValueError, match=r"attention_layers index 2 .*encoder \(2 layers\)"):
        Seq2SeqConfig(10, n_encoder_layers=2, n_decoder_layers=3, attention_layers=[2])


def test_negative_attention_layers_count_from_the_end_of_each_stack() -> None:
    from gpam.models import Seq2SeqTransformer

    cfg = Seq2SeqConfig(
        10, d_model=16, n_heads=2, n_encoder_layers=4, n_decoder_layers=2, attention_layers=[-1]
    )
    got = Seq2SeqTransformer(cfg).layer_variants()
    assert got["encoder"] == ["softmax", "softmax", "softmax", "dagpam"]
    assert got["decoder"] == ["softmax", "dagpam"]
    assert got["cross"] == ["softmax", "dagpam"]
    both = Seq2SeqConfig(10, n_encoder_layers=4, n_decoder_layers=2, attention_layers=[0, 1])
    assert [both.variant_for("dagpam", i, 2) for i in range(2)] == ["dagpam", "dagpam"]
