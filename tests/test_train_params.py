"""The one weight-decay policy (gpam.train.params), checked parameter by parameter by name."""

from __future__ import annotations

import pytest
import torch

from gpam.models import LMConfig, Seq2SeqConfig, Seq2SeqTransformer, TransformerLM
from gpam.train.params import decays, parameter_groups


def _groups(model, wd=0.1):
    decayed, plain = parameter_groups(model, wd)
    assert decayed["weight_decay"] == wd and plain["weight_decay"] == 0.0
    return set(decayed["names"]), set(plain["names"])


def test_lm_groups_by_name():
    cfg = LMConfig(vocab_size=20, d_model=16, n_layers=1, n_heads=2, max_len=8,
                   attention="dagpam", learnable_lambda=True)  # fmt: skip
    model = TransformerLM(cfg)
    decayed, plain = _groups(model)
    assert decayed | plain == {n for n, _ in model.named_parameters()} and not decayed & plain
    assert decayed == {
        "tok_emb.weight",
        "positions.learned.weight",
        "blocks.0.self_attn.variant.neg_weight",  # daGPAM's module (state-dict key: .neg_weight)
        "blocks.0.self_attn.q_proj.weight",
        "blocks.0.self_attn.k_proj.weight",
        "blocks.0.self_attn.v_proj.weight",
        "blocks.0.self_attn.out_proj.weight",
        "blocks.0.mlp.fc.weight",
        "blocks.0.mlp.proj.weight",
    }
    for name in ("blocks.0.self_attn.variant.lam_neg_param", "blocks.0.norm1.weight",
                 "blocks.0.norm3.bias", "norm_f.weight", "blocks.0.mlp.fc.bias"):  # fmt: skip
        assert name in plain


def test_seq2seq_norms_biases_and_lambdas_never_decay():
    cfg = Seq2SeqConfig(src_vocab_size=20, d_model=16, n_heads=2, n_encoder_layers=1,
                        n_decoder_layers=1, learnable_lambda=True)  # fmt: skip
    decayed, plain = _groups(Seq2SeqTransformer(cfg))
    assert plain and all(("norm" in n or n.endswith("bias") or "lam" in n) for n in plain)
    assert all(n.endswith("weight") and "norm" not in n for n in decayed)


def test_rules_and_frozen_parameters():
    w2, w1 = torch.nn.Parameter(torch.ones(3, 3)), torch.nn.Parameter(torch.ones(3))
    assert decays("layer.weight", w2) and not decays("layer.bias", w1)
    assert not decays("layers.0.ln_norm.weight", w2)  # a 2-D norm-named tensor: still no decay
    assert not decays("attn.lambda_proj.weight", w2) and not decays("attn.lam_q.weight", w2)
    lin = torch.nn.Linear(3, 3)
    lin.bias.requires_grad_(False)
    decayed, plain = parameter_groups(lin, 0.1)
    assert decayed["names"] == ["weight"] and plain["names"] == []  # frozen ones are left out
    with pytest.raises(ValueError, match="weight_decay"):
        parameter_groups(lin, -1.0)


def test_engine_uses_the_policy(tmp_path):
    """After a step with a zero gradient, only decayed parameters move (AdamW's decay term)."""
    from gpam.data.tokenizer import CharTokenizer
    from gpam.train.distributed import DistInfo
    from gpam.train.loop import TrainConfig, train_loop

    model = TransformerLM(LMConfig(vocab_size=8, d_model=8, n_layers=1, n_heads=2, max_len=4,
                                   learnable_lambda=True, dropout=0.0))  # fmt: skip
    before = {n: p.detach().clone() for n, p in model.named_parameters()}

    class ZeroGrad:
        def batch(self, pos):
            return None, pos

        def loss(self, m, batch):
            return sum(p.sum() for p in m.parameters()) * 0.0, 1

        def validate(self, m):
            from gpam.train import Validation

            return Validation(0.0)

    cfg = TrainConfig(steps=1, lr=0.1, weight_decay=0.5, warmup=0, eval_every=1)
    train_loop(model, ZeroGrad(), CharTokenizer.train(["ab"]), cfg, None, DistInfo(),
               torch.device("cpu"), quiet=True)  # fmt: skip
    for n, p in model.named_parameters():
        moved = not torch.equal(before[n], p.detach())
        assert moved == decays(n, p), n
