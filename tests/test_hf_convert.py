"""gpam.hf.convert on tiny GPT-2 / Llama-family / BERT-family models built in the test (offline)."""

from __future__ import annotations

import copy
import json
import sys

import pytest
import torch

tf = pytest.importorskip("transformers")
import gpam.hf as gh  # noqa: E402

V = 61


# Small widths, but a larger init than the default 0.02 so attention is far from uniform
# (otherwise both softmax maps of daGPAM are nearly equal and lam_neg barely matters).
DEC = {
    "vocab_size": V,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "initializer_range": 0.2,
}
GQA = {**DEC, "num_key_value_heads": 2}  # grouped-query: 4 query heads share 2 kv heads


def _gpt2():
    cfg = tf.GPT2Config(vocab_size=V, n_embd=32, n_layer=2, n_head=4, initializer_range=0.2)
    return tf.GPT2LMHeadModel(cfg)


def _llama():  # rotary positions + grouped-query attention
    return tf.LlamaForCausalLM(tf.LlamaConfig(**GQA))


def _mistral():
    return tf.MistralForCausalLM(tf.MistralConfig(**GQA, sliding_window=6))


def _qwen2():
    return tf.Qwen2ForCausalLM(tf.Qwen2Config(**GQA))


def _bert():
    return tf.BertForMaskedLM(tf.BertConfig(**DEC))


def _roberta():
    return tf.RobertaForMaskedLM(tf.RobertaConfig(**DEC, pad_token_id=1))


FAMILIES = {
    "gpt2": _gpt2,
    "llama": _llama,
    "mistral": _mistral,
    "qwen2": _qwen2,
    "bert": _bert,
    "roberta": _roberta,
}
CAUSAL = ("gpt2", "llama", "mistral", "qwen2")


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(3, V, (2, 13))
    mask = torch.ones_like(ids)
    mask[1, :4] = 0  # left padding in the second row
    return ids, mask


def _states(model) -> list[gh.GpamAttentionState]:
    return [m for m in model.modules() if isinstance(m, gh.GpamAttentionState)]


def _set_lam(model, value: float) -> None:
    with torch.no_grad():
        for s in _states(model):
            (s.lam_neg_param if s.learnable_lambda else s.lam_neg_value).fill_(value)


@pytest.mark.parametrize(
    ("family", "neg_query"),
    [(f, "linear") for f in FAMILIES]
    + [(f, q) for f in ("gpt2", "llama", "bert") for q in ("full", "negate")],
)
def test_lam0_forward_equals_original(family, neg_query, batch) -> None:
    ids, mask = batch
    model = FAMILIES[family]().eval()
    ref = model(ids, attention_mask=mask).logits
    conv = gh.convert(copy.deepcopy(model), lam_neg=0.0, neg_query=neg_query)
    assert conv.config._attn_implementation == gh.ATTN_IMPLEMENTATION
    assert len(_states(conv)) == 2
    out = conv(ids, attention_mask=mask).logits
    keep = mask.bool()
    assert (out - ref)[keep].abs().max().item() <= 1e-5
    _set_lam(conv, 0.5)  # the same layers with lam_neg > 0 really compute something else
    assert (conv(ids, attention_mask=mask).logits - ref)[keep].abs().max().item() > 1e-4


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_lam0_cached_generation_equals_original(family, batch) -> None:
    ids, mask = batch
    model = FAMILIES[family]().eval()
    conv = gh.convert(copy.deepcopy(model), lam_neg=0.0)
    kw = {"max_new_tokens": 8, "do_sample": False, "pad_token_id": 0}
    assert torch.equal(
        model.generate(ids[:, :6], attention_mask=mask[:, :6], **kw),
        conv.generate(ids[:, :6], attention_mask=mask[:, :6], **kw),
    )
    # step by step with a KV cache: logits of each new token equal the original's
    outs = []
    for m in (model, conv):
        o = m(ids[:, :6], attention_mask=mask[:, :6], use_cache=True)
        logits, past = [o.logits], o.past_key_values
        for t in range(6, ids.shape[1]):
            o = m(
                ids[:, t : t + 1],
                attention_mask=mask[:, : t + 1],
                past_key_values=past,
                use_cache=True,
            )
            logits.append(o.logits)
            past = o.past_key_values
        outs.append(torch.cat(logits, dim=1))
    assert (outs[0] - outs[1])[mask.bool()].abs().max().item() <= 1e-5


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_decoding_step_in_converted_models(family, batch, monkeypatch) -> None:
    """With daGPAM's weights-first decoding step taken at every size (its queries are not
    adjacent here, the cache is Hugging Face's, Llama's K/V heads are grouped), cached greedy
    generation at lam_neg 0 gives the original's tokens, and at lam_neg 0.3 the tokens and
    logits of the SDPA paths."""
    import gpam.functional._decode as dd
    import gpam.functional.dagpam as dg

    monkeypatch.setattr(dd, "DECODE_MIN_SCORES", 1)
    taken: list[int] = []
    real = dd.decode_step
    monkeypatch.setattr(dg, "decode_step", lambda *a: taken.append(1) or real(*a))
    ids, mask = batch
    ids, mask = ids[:, :6], mask[:, :6]
    model = FAMILIES[family]().eval()
    kw = {"attention_mask": mask, "max_new_tokens": 8, "do_sample": False, "pad_token_id": 0}
    conv0 = gh.convert(copy.deepcopy(model), lam_neg=0.0)
    assert torch.equal(model.generate(ids, **kw), conv0.generate(ids, **kw))
    assert taken
    conv = gh.convert(copy.deepcopy(model), lam_neg=0.3)
    kw = {**kw, "output_logits": True, "return_dict_in_generate": True}
    n = len(taken)
    stepped = conv.generate(ids, **kw)
    assert len(taken) > n
    monkeypatch.setattr(dd, "DECODE_DEVICES", frozenset())
    n = len(taken)
    sdpa = conv.generate(ids, **kw)
    assert len(taken) == n  # the step was off
    assert torch.equal(stepped.sequences, sdpa.sequences)
    torch.testing.assert_close(
        torch.stack(stepped.logits), torch.stack(sdpa.logits), atol=1e-5, rtol=1e-5
    )


@pytest.mark.parametrize("family", CAUSAL)
def test_causal_mask_is_applied(family) -> None:
    model = gh.convert(FAMILIES[family]().eval(), lam_neg=0.3)
    ids = torch.randint(3, V, (1, 10))
    changed = ids.clone()
    changed[0, 7:] = (changed[0, 7:] + 1) % V
    a, b = model(ids).logits, model(changed).logits
    assert torch.allclose(a[:, :7], b[:, :7], atol=1e-6)  # the past never sees the future
    assert not torch.allclose(a[:, 7:], b[:, 7:], atol=1e-4)


def test_cached_matches_full_forward_with_lambda() -> None:
    model = gh.convert(_llama().eval(), lam_neg=0.4)
    ids = torch.randint(3, V, (2, 9))
    full = model(ids).logits
    o = model(ids[:, :5], use_cache=True)
    steps = [o.logits]
    past = o.past_key_values
    for t in range(5, 9):
        o = model(ids[:, t : t + 1], past_key_values=past, use_cache=True)
        steps.append(o.logits)
        past = o.past_key_values
    assert torch.allclose(torch.cat(steps, 1), full, atol=1e-5)
    kw = {"max_new_tokens": 5, "do_sample": False, "pad_token_id": 0}
    static = model.generate(ids[:, :4], cache_implementation="static", **kw)
    assert torch.equal(static, model.generate(ids[:, :4], **kw))


@pytest.mark.parametrize("neg_query", ["linear", "full"])
def test_rotary_negative_query_is_relative(neg_query) -> None:
    """With RoPE, Q_neg is built before rotation, so shifting all positions changes nothing."""
    model = gh.convert(_llama().eval(), lam_neg=0.5, neg_query=neg_query)
    ids = torch.randint(3, V, (1, 8))
    pos = torch.arange(8)[None]
    a = model(ids, position_ids=pos).logits
    b = model(ids, position_ids=pos + 11).logits
    assert torch.allclose(a, b, atol=1e-4)


@pytest.mark.parametrize("family", ["gpt2", "llama", "bert"])
def test_gradients_reach_negative_query_and_lambda(family, batch) -> None:
    ids, mask = batch
    model = gh.convert(FAMILIES[family]().train(), lam_neg=0.2)
    model(ids, attention_mask=mask).logits.pow(2).mean().backward()
    for s in _states(model):
        assert s.lam_neg_param.grad is not None and s.lam_neg_param.grad.abs().sum() > 0
        assert s.neg_weight.grad is not None and s.neg_weight.grad.abs().sum() > 0


def test_one_step_from_lam0_changes_outputs(batch) -> None:
    ids, mask = batch
    model = gh.convert(_gpt2().eval(), lam_neg=0.0)
    before = model(ids, attention_mask=mask).logits.detach()
    opt = torch.optim.AdamW(gh.gpam_parameters(model), lr=1e-2)
    loss = torch.nn.functional.cross_entropy(
        model(ids[:, :-1]).logits.reshape(-1, V), ids[:, 1:].reshape(-1)
    )
    loss.backward()
    lam_grads = [s.lam_neg_param.grad.abs().sum().item() for s in _states(model)]
    assert all(g > 0 for g in lam_grads)  # lambda learns from an exact 0 start
    opt.step()
    lams = [v for heads in gh.lambdas(model).values() for v in heads]
    assert min(lams) >= 0.0 and max(lams) > 0.0
    after = model(ids, attention_mask=mask).logits.detach()
    assert (after - before).abs().max().item() > 1e-5


def test_fixed_lambda_is_a_buffer() -> None:
    model = gh.convert(_gpt2(), lam_neg=0.25, learnable_lambda=False, neg_query="negate")
    assert gh.gpam_parameters(model) == []
    assert gh.lambdas(model)["transformer.h.0.attn"] == [0.25] * 4
    assert any(".gpam.lam_neg_value" in k for k in model.state_dict())


def test_layers_subset(batch) -> None:
    ids, mask = batch
    model = _llama().eval()
    ref = model(ids, attention_mask=mask).logits
    conv = gh.convert(copy.deepcopy(model), lam_neg=0.0, layers=[1])
    assert [n for n, m in conv.named_modules() if isinstance(m, gh.GpamAttentionState)] == [
        "model.layers.1.self_attn.gpam"
    ]
    assert (conv(ids, attention_mask=mask).logits - ref)[mask.bool()].abs().max() <= 1e-5
    with pytest.raises(ValueError, match="layers"):
        gh.convert(copy.deepcopy(model), layers=[2])
    with pytest.raises(TypeError, match="layers"):
        gh.convert(copy.deepcopy(model), layers=1)


def test_other_variants(batch) -> None:
    ids, mask = batch
    model = _gpt2().eval()
    ref = model(ids, attention_mask=mask).logits
    keep = mask.bool()
    soft = gh.convert(copy.deepcopy(model), attention="softmax")
    assert gh.gpam_parameters(soft) == []
    assert (soft(ids, attention_mask=mask).logits - ref)[keep].abs().max() <= 1e-5
    for name in ("cog", "sigmoid", "coda"):
        out = gh.convert(copy.deepcopy(model), attention=name)(ids, attention_mask=mask).logits
        assert torch.isfinite(out).all()
        assert (out - ref)[keep].abs().max() > 1e-4, name
    with pytest.raises(ValueError, match="diff"):
        gh.convert(copy.deepcopy(model), attention="diff")


def test_bad_input_errors() -> None:
    with pytest.raises(ValueError, match="gpt2, llama"):
        cfg = tf.T5Config(vocab_size=V, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4)
        gh.convert(tf.T5ForConditionalGeneration(cfg))
    with pytest.raises(TypeError, match="model"):
        gh.convert(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="lam_neg"):
        gh.convert(_gpt2(), lam_neg=-0.1)
    with pytest.raises(ValueError, match="neg_query"):
        gh.convert(_gpt2(), neg_query="random")
    with pytest.raises(ValueError, match="attention"):
        gh.convert(_gpt2(), attention="relu")
    model = gh.convert(_gpt2())
    with pytest.raises(ValueError, match="already converted"):
        gh.convert(model)


@pytest.mark.parametrize("family", ["gpt2", "llama", "bert"])
def test_save_load_roundtrip(family, batch, tmp_path) -> None:
    ids, mask = batch
    model = gh.convert(FAMILIES[family]().eval(), lam_neg=0.3, neg_query="full", layers=[0])
    with torch.no_grad():
        for p in gh.gpam_parameters(model):
            p.add_(0.01 * torch.randn_like(p))  # make the saved values differ from any init
    ref = model(ids, attention_mask=mask).logits
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["gpam"]["neg_query"] == "full" and cfg["gpam"]["layers"] == [0]
    loaded = gh.load_converted(tmp_path).eval()
    assert type(loaded) is type(model)
    assert torch.allclose(loaded(ids, attention_mask=mask).logits, ref, atol=1e-6)
    with pytest.raises(ValueError, match="not a gpam-converted"):
        plain = tmp_path / "plain"
        FAMILIES[family]().save_pretrained(plain)
        gh.load_converted(plain)


def test_missing_transformers_message(monkeypatch) -> None:
    from gpam.hf._compat import require_transformers

    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ImportError, match=r"pip install gpam\[hf\]"):
        require_transformers()
    with pytest.raises(ImportError, match=r"pip install gpam\[hf\]"):
        gh.convert  # noqa: B018 - the lazy attribute access is what is tested


def test_output_attentions_are_affine_daGPAM_weights() -> None:
    model = gh.convert(_gpt2().eval(), lam_neg=0.3)
    ids = torch.randint(3, V, (1, 7))
    out = model(ids, output_attentions=True)
    assert len(out.attentions) == 2
    w = out.attentions[0]
    assert w.shape == (1, 4, 7, 7)
    assert torch.allclose(w.sum(-1), torch.ones(1, 4, 7), atol=1e-5)  # affine rows
    assert w.min() < 0  # negative weights: the point of GPAM
    assert torch.all(w.triu(1) == 0)  # causal
    assert torch.allclose(out.logits, model(ids).logits, atol=1e-5)


def test_import_is_lazy() -> None:
    import subprocess

    code = (
        "import sys, gpam; before = 'transformers' in sys.modules; import gpam.hf; "
        "assert ('transformers' in sys.modules) == before, 'gpam.hf imported transformers'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# ------------------------------------------------------- per-token lambda, new negative queries


@pytest.mark.parametrize("family", ["gpt2", "llama", "bert"])
def test_token_lambda_lam0_is_exact_and_learns(family, batch) -> None:
    """lambda_mode='token' with lam_neg=0 starts equal to the pretrained model, and both the
    lambda map's weight and bias get gradients from that exact-0 start."""
    ids, mask = batch
    model = FAMILIES[family]().eval()
    ref = model(ids, attention_mask=mask).logits
    conv = gh.convert(copy.deepcopy(model), lam_neg=0.0, lambda_mode="token")
    keep = mask.bool()
    out = conv(ids, attention_mask=mask).logits
    assert (out - ref)[keep].abs().max().item() <= 1e-5
    assert all(v == [0.0] * len(v) for v in gh.lambdas(conv).values())  # value for x = 0
    out.pow(2).mean().backward()
    for s in _states(conv):
        assert s.lambda_mode == "token" and s.lambda_proj.weight.dtype == torch.float32
        assert s.lambda_proj.bias.grad.abs().sum() > 0
        assert s.lambda_proj.weight.grad.abs().sum() > 0
    with torch.no_grad():  # a lambda that varies per token really changes the outputs
        for s in _states(conv):
            s.lambda_proj.weight.normal_(0.0, 0.5)
    assert (conv(ids, attention_mask=mask).logits - ref)[keep].abs().max().item() > 1e-4


def test_token_lambda_cached_decoding_and_save_load(tmp_path) -> None:
    model = gh.convert(_llama().eval(), lam_neg=0.3, lambda_mode="token", neg_query="relu_linear")
    with torch.no_grad():
        for s in _states(model):
            s.lambda_proj.weight.normal_(0.0, 0.3)
    ids = torch.randint(3, V, (2, 9))
    full = model(ids).logits
    o = model(ids[:, :5], use_cache=True)
    steps, past = [o.logits], o.past_key_values
    for t in range(5, 9):
        o = model(ids[:, t : t + 1], past_key_values=past, use_cache=True)
        steps.append(o.logits)
        past = o.past_key_values
    assert torch.allclose(torch.cat(steps, 1), full, atol=1e-5)
    model.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())["gpam"]
    assert cfg["lambda_mode"] == "token" and cfg["neg_query"] == "relu_linear"
    loaded = gh.load_converted(tmp_path).eval()
    assert torch.allclose(loaded(ids).logits, full, atol=1e-6)


@pytest.mark.parametrize("neg_query", ["linear", "full"])
def test_neg_identity_negates_the_query(neg_query) -> None:
    model = gh.convert(_gpt2().eval(), lam_neg=0.5, neg_query=neg_query, neg_init="neg_identity")
    state = _states(model)[0]
    q = torch.randn(1, 4, 5, 8)
    hidden = torch.randn(1, 5, 32)
    if neg_query == "linear":
        torch.testing.assert_close(state.negative_query(None, q), -q)
    else:
        w, b = _gpt2_query_proj(model)
        q_pos = (hidden @ w.T + b).view(1, 5, 4, 8).transpose(1, 2)
        torch.testing.assert_close(state.negative_query(hidden, None), -q_pos)


def _gpt2_query_proj(model):  # the query part of the first layer's fused projection
    attn = model.transformer.h[0].attn
    e = attn.embed_dim
    return attn.c_attn.weight[:, :e].t().detach(), attn.c_attn.bias[:e].detach()


def test_diff2_and_centered_conversion(batch) -> None:
    ids, mask = batch
    model = _gpt2().eval()
    with pytest.raises(ValueError, match="diff2.*cannot convert a pretrained model exactly"):
        gh.convert(copy.deepcopy(model), attention="diff2")
    out = gh.convert(copy.deepcopy(model), attention="centered")(ids, attention_mask=mask).logits
    assert torch.isfinite(out).all()
    with pytest.raises(ValueError, match="lambda_mode"):
        gh.convert(copy.deepcopy(model), lambda_mode="layer")
    with pytest.raises(ValueError, match="neg_init"):
        gh.convert(copy.deepcopy(model), neg_init="eye")


@pytest.mark.parametrize("lambda_mode", ["head", "token"])
def test_rotary_negative_query_without_unrotation(lambda_mode, monkeypatch) -> None:
    """Llama (GQA): Q_neg comes from the kept q_proj output, not from un-rotating the query;
    the values equal the un-rotation path (float64, round-off) and decoding with a cache."""
    import gpam.hf.attention as hf_attention

    torch.manual_seed(0)
    model = gh.convert(_llama().double().eval(), lam_neg=0.4, lambda_mode=lambda_mode)
    ids = torch.randint(3, V, (2, 7))
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[1, :2] = 0  # left padding
    calls = []
    real = hf_attention.unapply_rope
    monkeypatch.setattr(hf_attention, "unapply_rope", lambda *a: calls.append(1) or real(*a))
    kept = model(ids, attention_mask=mask).logits
    assert not calls
    for m in model.modules():
        if hasattr(m, "q_proj"):
            m.q_proj._forward_hooks.clear()
    undone = model(ids, attention_mask=mask).logits
    assert calls
    torch.testing.assert_close(kept, undone, rtol=1e-10, atol=1e-10)
