"""gpam.hf.convert on bfloat16 / float16 models: float32 initialisation, float32 lambdas."""

from __future__ import annotations

import pytest
import torch

tf = pytest.importorskip("transformers")
import gpam.hf as gh  # noqa: E402

V = 53


def _gpt2(dtype: torch.dtype):
    cfg = tf.GPT2Config(vocab_size=V, n_embd=32, n_layer=2, n_head=4, initializer_range=0.2)
    return tf.GPT2LMHeadModel(cfg).to(dtype).eval()


def _llama(dtype: torch.dtype):
    cfg = tf.LlamaConfig(
        vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, initializer_range=0.2,
    )  # fmt: skip
    return tf.LlamaForCausalLM(cfg).to(dtype).eval()


def _states(model) -> list[gh.GpamAttentionState]:
    return [m for m in model.modules() if isinstance(m, gh.GpamAttentionState)]


@pytest.mark.parametrize("neg_query", ["linear", "full"])
@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_convert_half_model_forward_and_generate(family, dtype, neg_query):
    torch.manual_seed(0)
    model = {"gpt2": _gpt2, "llama": _llama}[family](dtype)
    ids = torch.randint(3, V, (2, 9))
    ref = model(ids).logits.float()
    conv = gh.convert(model, lam_neg=0.0, neg_query=neg_query)
    states = _states(conv)
    assert len(states) == 2
    for s in states:
        assert s.lam_neg_param.dtype == torch.float32  # lambdas are never stored in half
        if neg_query == "linear":
            w = s.neg_weight
            assert w.dtype == dtype
            eye = torch.eye(w.shape[-1]).expand_as(w)
            # orthogonal in float32, then rounded: W W^T = I up to the dtype's rounding
            torch.testing.assert_close(
                (w.float() @ w.float().transpose(-1, -2)), eye, atol=3e-2, rtol=0
            )
        else:
            assert s.q_neg_proj.weight.dtype == dtype
    out = conv(ids).logits
    assert out.dtype == dtype and torch.isfinite(out).all()
    # lam_neg = 0: the converted model computes the original function (half-precision round-off)
    torch.testing.assert_close(out.float(), ref, atol=5e-2, rtol=5e-2)
    with torch.no_grad():
        for s in states:
            s.lam_neg_param.fill_(0.5)
    gen = conv.generate(ids[:, :5], max_new_tokens=4, do_sample=False, pad_token_id=0)
    assert gen.shape == (2, 9) and gen.dtype == torch.long
    loss = conv(ids, labels=ids).loss
    loss.backward()
    assert all(s.lam_neg_param.grad is not None for s in states)
    assert all(torch.isfinite(s.lam_neg_param.grad).all() for s in states)


def test_lambdas_stay_float32_when_a_converted_model_is_cast():
    conv = gh.convert(_llama(torch.float32), lam_neg=0.25)
    conv.to(torch.bfloat16)
    for s in _states(conv):
        assert s.lam_neg_param.dtype == torch.float32
        assert s.neg_weight.dtype == torch.bfloat16
        torch.testing.assert_close(s.lambdas()[1], torch.full((4,), 0.25))
    out = conv(torch.randint(3, V, (1, 6))).logits
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
