"""TransformerLM: causality, KV-cached decoding, padding, variants, LN placement, generation."""

from __future__ import annotations

import pytest
import torch

import gpam
from gpam.models import LMConfig, TransformerLM

V = 37


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run fastest (and suffer least from a busy machine) on one thread."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny(**kw: object) -> TransformerLM:
    args = {"d_model": 32, "n_layers": 2, "n_heads": 4, "max_len": 64, "dropout": 0.0, **kw}
    return TransformerLM(LMConfig(V, **args)).eval()


def ids(b: int, t: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, V, (b, t), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("variant", gpam.VARIANTS)
def test_every_variant_forward_backward(variant: str) -> None:
    lm = TransformerLM(LMConfig(V, d_model=32, n_layers=3, n_heads=4, attention=variant))
    lm.train()
    x = ids(2, 9)
    logits = lm(x)
    assert logits.shape == (2, 9, V)
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, V), x[:, 1:].reshape(-1))
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in lm.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    # the chosen variant is really used (cog keeps softmax at the ends by default)
    expected = ["softmax", "cog", "softmax"] if variant == "cog" else [variant] * 3
    assert [b.self_attn.attention for b in lm.blocks] == expected


@pytest.mark.parametrize("positions", ["learned", "sinusoidal", "rotary"])
@pytest.mark.parametrize("norm", ["pre", "post"])
def test_cached_decoding_equals_full_forward(positions: str, norm: str) -> None:
    lm = tiny(positions=positions, norm=norm)
    x = ids(2, 11)
    with torch.no_grad():
        full = lm(x)
        # one token at a time
        caches: list = []
        steps = []
        for t in range(x.shape[1]):
            out, caches = lm(x[:, t : t + 1], kv_caches=caches)
            steps.append(out)
        torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)
        # in chunks
        a, caches = lm(x[:, :4], kv_caches=[])
        b, caches = lm(x[:, 4:], kv_caches=caches)
        torch.testing.assert_close(torch.cat([a, b], 1), full, atol=1e-5, rtol=1e-5)
    assert caches[0].length == x.shape[1]


@pytest.mark.parametrize(
    ("variant", "extra"),
    [
        ("dagpam", {}),
        ("diff", {}),
        ("sigmoid", {}),
        ("diff2", {"kv_heads": 2}),
        ("centered", {}),
        ("dagpam", {"lambda_mode": "token", "neg_query": "relu_linear", "kv_heads": 2}),
    ],
)
def test_cached_decoding_other_variants(variant: str, extra: dict) -> None:
    lm = tiny(attention=variant, positions="rotary", **extra)
    if extra.get("lambda_mode") == "token":  # make lambda depend on the token
        for block in lm.blocks:
            torch.nn.init.normal_(block.self_attn.lambda_proj.weight, std=0.3)
    x = ids(2, 7)
    with torch.no_grad():
        full = lm(x)
        caches: list = []
        steps = []
        for t in range(x.shape[1]):
            out, caches = lm(x[:, t : t + 1], kv_caches=caches)
            steps.append(out)
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("positions", ["learned", "sinusoidal", "rotary"])
def test_causal_future_tokens_do_not_change_earlier_logits(positions: str) -> None:
    lm = tiny(positions=positions)
    x = ids(1, 12)
    y = x.clone()
    y[:, 7:] = (y[:, 7:] + 5) % V
    with torch.no_grad():
        lx, ly = lm(x), lm(y)
    torch.testing.assert_close(lx[:, :7], ly[:, :7])
    assert not torch.allclose(lx[:, 7:], ly[:, 7:])


@pytest.mark.parametrize(
    ("variant", "positions"),
    [("softmax", "learned"), ("dagpam", "rotary"), ("dagpam", "sinusoidal"), ("coda", "learned")],
)
@pytest.mark.parametrize("side", ["right", "left"])
def test_padded_batch_equals_unpadded_single(variant: str, positions: str, side: str) -> None:
    lm = tiny(attention=variant, positions=positions)
    a, b = ids(1, 9, seed=2), ids(1, 5, seed=3)
    batch = torch.zeros(2, 9, dtype=torch.long)
    pad = torch.zeros(2, 9, dtype=torch.bool)
    batch[0] = a[0]
    real = slice(0, 5) if side == "right" else slice(4, 9)
    batch[1, real] = b[0]
    pad[1] = True
    pad[1, real] = False
    with torch.no_grad():
        out = lm(batch, padding_mask=pad)
        torch.testing.assert_close(out[0:1], lm(a), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out[1:2, real], lm(b), atol=1e-5, rtol=1e-5)
        if side == "left":  # without the mask the padding changes the real tokens' logits
            assert not torch.allclose(lm(batch)[1:2, real], lm(b), atol=1e-4)


def test_generate_with_left_padded_prompts_equals_single_prompts() -> None:
    lm = tiny(positions="rotary", attention="dagpam")
    a, b = ids(1, 6, seed=4), ids(1, 3, seed=5)
    batch = torch.cat([a, torch.cat([torch.zeros(1, 3, dtype=torch.long), b], 1)])
    pad = torch.zeros(2, 6, dtype=torch.bool)
    pad[1, :3] = True
    out = lm.generate(batch, 5, temperature=0.0, padding_mask=pad)
    assert torch.equal(out[0, 6:], lm.generate(a, 5, temperature=0.0)[0, 6:])
    assert torch.equal(out[1, 6:], lm.generate(b, 5, temperature=0.0)[0, 3:])
    with pytest.raises(ValueError, match="left-padded"):
        lm.generate(batch, 2, padding_mask=pad.flip(1))


def test_dagpam_with_lam_neg_zero_equals_softmax_with_same_weights() -> None:
    soft = tiny(attention="softmax", positions="rotary")
    dag = tiny(attention="dagpam", lam_neg=0.0, positions="rotary")
    missing, unexpected = dag.load_state_dict(soft.state_dict(), strict=False)
    assert not unexpected and all("neg_weight" in k for k in missing) and missing
    x = ids(2, 10)
    with torch.no_grad():
        torch.testing.assert_close(dag(x), soft(x), atol=1e-6, rtol=1e-5)
        dag_half = tiny(attention="dagpam", lam_neg=0.5, positions="rotary")
        dag_half.load_state_dict(dag.state_dict())
        assert not torch.allclose(dag_half(x), soft(x), atol=1e-4)


def test_pre_and_post_layer_norm_placement() -> None:
    x = ids(2, 6)
    for norm in ("pre", "post"):
        lm = tiny(norm=norm)
        seen: list[torch.Tensor] = []
        lm.blocks[0].register_forward_hook(lambda m, i, o, seen=seen: seen.append(o))
        with torch.no_grad():
            lm(x)
        h = seen[0]
        normalised = torch.allclose(h.mean(-1), torch.zeros(2, 6), atol=1e-5) and torch.allclose(
            h.var(-1, unbiased=False), torch.ones(2, 6), atol=1e-3
        )
        # post-LN layers end with a LayerNorm (unit gain at init); pre-LN ones end in the residual
        assert normalised == (norm == "post")
        assert (lm.norm_f is not None) == (norm == "pre")


def test_tied_embeddings_and_parameter_report() -> None:
    lm = tiny(attention="dagpam", n_layers=3)
    assert lm.lm_head.weight is lm.tok_emb.weight
    untied = tiny(tie_embeddings=False)
    assert untied.lm_head.weight is not untied.tok_emb.weight
    rep = lm.parameter_report()
    head_dim = 32 // 4
    assert rep["extra"] == 3 * 4 * head_dim * head_dim  # linear negative query per layer
    assert rep["total"] == sum(p.numel() for p in lm.parameters())
    soft = tiny(attention="softmax", n_layers=3)
    assert soft.parameter_report()["extra"] == 0
    assert rep["softmax_equivalent"] == soft.parameter_report()["total"]
    assert rep["overhead_pct"] == pytest.approx(100 * rep["extra"] / rep["softmax_equivalent"])


def test_generate_greedy_matches_step_by_step_argmax() -> None:
    lm = tiny(positions="rotary")
    prompt = ids(2, 3)
    out = lm.generate(prompt, 6, temperature=0.0)
    assert out.shape == (2, 9) and torch.equal(out[:, :3], prompt)
    ref = prompt
    with torch.no_grad():
        for _ in range(6):
            ref = torch.cat([ref, lm(ref)[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(out, ref)
    # top_k=1 sampling is greedy too
    assert torch.equal(lm.generate(prompt, 6, temperature=1.0, top_k=1), ref)


def _windowed_reference(lm: TransformerLM, prompt, n: int, pad=None):  # noqa: ANN001, ANN202
    """Greedy tokens by brute force: the model re-run on the last max_len tokens every step."""
    w, out = lm.config.max_len, prompt
    with torch.no_grad():
        for _ in range(n):
            mask = None if pad is None else pad[:, -w:]
            nxt = lm(out[:, -w:], padding_mask=mask)[:, -1].argmax(-1, keepdim=True)
            out = torch.cat([out, nxt], 1)
            if pad is not None:
                pad = torch.cat([pad, torch.zeros_like(nxt, dtype=torch.bool)], 1)
    return out


@pytest.mark.parametrize("positions", ["learned", "sinusoidal", "rotary"])
def test_generate_past_max_len_slides_a_window(positions: str) -> None:
    # prompt + new tokens > max_len: generation goes on with the last max_len tokens as context
    # (learned positions used to refuse it; rotary and sinusoidal ran past the context)
    lm = tiny(positions=positions, max_len=8).double()
    prompt = ids(2, 5)
    out = lm.generate(prompt, 12, temperature=0.0)
    assert out.shape == (2, 17)
    assert torch.equal(out, _windowed_reference(lm, prompt, 12))
    # a prompt longer than the window: only its last max_len tokens are seen
    long = ids(1, 11, seed=3)
    got = lm.generate(long, 4, temperature=0.0)
    assert torch.equal(got[:, :11], long)
    assert torch.equal(got, _windowed_reference(lm, long, 4))


def test_generate_past_max_len_with_left_padding() -> None:
    lm = tiny(positions="rotary", max_len=6).double()
    batch = torch.cat([ids(1, 4, seed=4), ids(1, 4, seed=5)])
    pad = torch.tensor([[True, True, False, False], [False, False, False, False]])
    out = lm.generate(batch, 9, temperature=0.0, padding_mask=pad)
    assert torch.equal(out, _windowed_reference(lm, batch, 9, pad))
    # row 0 alone gives the same tokens: the window drops its padding before any real token
    alone = lm.generate(batch[:1, 2:], 9, temperature=0.0)
    assert torch.equal(out[0, 4:], alone[0, 2:])


def test_generate_sampling_is_seeded_and_stops_at_eos() -> None:
    lm = tiny()
    prompt = ids(3, 2)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a = lm.generate(prompt, 8, temperature=1.5, top_k=5, generator=g1)
    b = lm.generate(prompt, 8, temperature=1.5, top_k=5, generator=g2)
    assert torch.equal(a, b)
    eos = int(lm.generate(prompt, 1, temperature=0.0)[0, -1])  # first greedy token of row 0
    out = lm.generate(prompt, 8, temperature=0.0, eos_id=eos)
    assert out[0, 2] == eos
    for row in out[:, 2:]:
        hits = (row == eos).nonzero()
        if len(hits):
            assert (row[int(hits[0]) :] == eos).all()


def test_bad_inputs_raise_clear_errors() -> None:
    lm = tiny(max_len=8)
    with pytest.raises(ValueError, match="input_ids"):
        lm(torch.full((1, 4), V))
    with pytest.raises(TypeError, match="input_ids"):
        lm(torch.zeros(1, 4))
    with pytest.raises(ValueError, match="max_len"):
        lm(ids(1, 9))
    with pytest.raises(ValueError, match="temperature"):
        lm.generate(ids(1, 2), 2, temperature=-1.0)
    with pytest.raises(ValueError, match="kv_caches"):
        lm(ids(1, 2), kv_caches=[None])
    with pytest.raises(TypeError, match="LMConfig"):
        TransformerLM({"vocab_size": 3})


def test_config_options_reach_the_attention_layers() -> None:
    lm = tiny(
        n_layers=3, attention="dagpam", neg_query="full", affine=False, lam_pos=1.3, lam_neg=0.2,
        kv_heads=2, bias=False, attention_layers=[1],
    )  # fmt: skip
    attn = [b.self_attn for b in lm.blocks]
    assert [a.attention for a in attn] == ["softmax", "dagpam", "softmax"]
    assert attn[1].neg_query == "full" and attn[1].kv_heads == 2 and not attn[1].affine
    assert attn[1].lambdas() == (1.3, 0.2)
    assert attn[1].q_proj.bias is None
    coda = tiny(attention="coda", attn_kwargs={"coda": {"alpha": 2.0}, "sigmoid": {"bias": 0.0}})
    assert all(b.self_attn.attn_kwargs == {"alpha": 2.0} for b in coda.blocks)
    learn = tiny(learnable_lambda=True)
    names = [n for n, _ in learn.named_parameters()]
    assert sum("lam_neg_param" in n for n in names) == 2
    tok = tiny(lambda_mode="token", neg_init="neg_identity", neg_query="full", lam_neg=0.0)
    assert all(b.self_attn.lambda_mode == "token" for b in tok.blocks)
    q = tok.blocks[0].self_attn
    assert torch.equal(q.q_neg_proj.weight, -q.q_proj.weight)
    assert (q.lambda_proj.bias == 0).all() and (q.lambda_proj.weight == 0).all()
    diff = tiny(attention="diff", n_layers=3)
    assert [b.self_attn.lam_init for b in diff.blocks] == pytest.approx(
        [gpam.nn.diff_lambda_init(i) for i in range(3)]
    )


def test_forward_returns_logits_or_a_named_lm_output() -> None:
    from gpam.models import LMOutput

    lm = tiny()
    x = ids(2, 5)
    with torch.no_grad():
        plain = lm(x)
        res = lm(x, kv_caches=[])
        assert len(res.caches) == 2 and res.caches[0].length == 5
        more = lm(x[:, :1], kv_caches=res.caches)
    assert isinstance(plain, torch.Tensor) and plain.shape == (2, 5, V)
    assert isinstance(res, LMOutput) and res._fields == ("logits", "caches")
    torch.testing.assert_close(res.logits, plain)
    assert isinstance(more, LMOutput) and more.caches[0].length == 6
