"""Masks made once per model forward (``gpam.functional.PreparedMask``, issue 19 item 3).

The models build one prepared mask per kind (LM self-attention; seq2seq encoder, decoder, cross)
and hand it to every layer. Checked here: the functional ops give exactly what they give for the
raw mask; the models give exactly what per-call masks (each layer merging its own, the way
``MultiheadAttention`` does for raw masks) give, outputs and gradients, every variant; the merge
runs once per forward; causal attention without padding reaches the op as ``is_causal=True``
with no mask.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import pytest
import torch

import gpam.functional as GF
import gpam.models.lm as lm_module
import gpam.models.seq2seq as s2s_module
import gpam.nn.masks as nn_masks
from gpam import MultiheadAttention
from gpam.functional import PreparedMask, prepare_mask
from gpam.functional.registry import VARIANTS
from gpam.models import LMConfig, Seq2SeqConfig, Seq2SeqTransformer, TransformerLM
from reference import DEFAULT_KWARGS, make_inputs

B, H, LQ, LK, D = 2, 4, 5, 6, 8


def _masks() -> dict[str, tuple[torch.Tensor, bool]]:
    g = torch.Generator().manual_seed(1)
    keep = torch.rand(B, 1, LQ, LK, generator=g) < 0.6
    keep[0, 0, 1] = False  # a dead row
    heads = torch.rand(B, H, LQ, LK, generator=g) < 0.6
    heads[1, 2, 3] = False
    pad = torch.zeros(B, 1, 1, LK, dtype=torch.float64)
    pad[1, ..., -2:] = float("-inf")
    pad[0, ..., :] = torch.finfo(torch.float64).min  # every key of batch 0 masked: dead rows
    bias = torch.randn(LQ, LK, generator=g, dtype=torch.float64)
    return {
        "bool": (keep, False),
        "bool+causal": (keep, True),
        "per-head": (heads, False),
        "float-pad": (pad, False),
        "float-bias+causal": (bias, True),
    }


@pytest.mark.parametrize("weights", [False, True])
@pytest.mark.parametrize("kind", sorted(_masks()))
@pytest.mark.parametrize("variant", VARIANTS)
def test_op_with_prepared_mask_equals_raw_mask(variant: str, kind: str, weights: bool) -> None:
    mask, causal = _masks()[kind]
    g = torch.Generator().manual_seed(0)
    inputs = make_inputs(variant, B, H, LQ, LK, D, generator=g, requires_grad=True)
    kw = {**DEFAULT_KWARGS[variant], "return_weights": weights}
    fn = getattr(GF, f"{variant}_attention")
    want = fn(*inputs.values(), attn_mask=mask, is_causal=causal, **kw)
    pm = prepare_mask(mask, causal, B, LQ, LK, dtype=torch.float64, device=torch.device("cpu"))
    got = fn(*inputs.values(), attn_mask=pm, **kw)
    want, got = (want, got) if weights else ((want,), (got,))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    grads = [torch.randn_like(t) for t in want]
    g_want = torch.autograd.grad(want, list(inputs.values()), grads, allow_unused=True)
    g_got = torch.autograd.grad(got, list(inputs.values()), grads, allow_unused=True)
    for a, b in zip(g_got, g_want):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_op_refuses_a_prepared_mask_that_does_not_fit() -> None:
    q, k, v = (torch.randn(B, H, LQ, D) for _ in range(3))
    cpu = torch.device("cpu")
    pm = prepare_mask(torch.ones(B, 1, 1, LQ + 1, dtype=torch.bool), False, B, LQ, LQ + 1,
                      dtype=torch.float32, device=cpu)  # fmt: skip
    with pytest.raises(ValueError, match="attn_mask .*PreparedMask"):
        GF.softmax_attention(q, k, v, attn_mask=pm)
    ok = prepare_mask(torch.ones(B, 1, 1, LQ, dtype=torch.bool), False, B, LQ, LQ,
                      dtype=torch.float32, device=cpu)  # fmt: skip
    with pytest.raises(ValueError, match="is_causal must be False"):
        GF.softmax_attention(q, k, v, attn_mask=ok, is_causal=True)
    with pytest.raises(ValueError, match="attn_mask of shape"):
        prepare_mask(torch.ones(B, 1, 3, LQ, dtype=torch.bool), False, B, LQ, LQ,
                     dtype=torch.float32, device=cpu)  # fmt: skip


def test_layer_refuses_prepared_mask_with_raw_masks() -> None:
    mha = MultiheadAttention(16, 2, attention="softmax")
    x = torch.randn(2, 3, 16)
    pm = nn_masks.layer_mask(None, None, True, 0, 2, 3, 3, x.dtype, x.device)
    torch.testing.assert_close(mha(x, attn_mask=pm), mha(x, is_causal=True), rtol=0, atol=0)
    with pytest.raises(ValueError, match="PreparedMask"):
        mha(x, attn_mask=pm, is_causal=True)
    with pytest.raises(ValueError, match="PreparedMask"):
        mha(x, attn_mask=pm, key_padding_mask=torch.zeros(2, 3, dtype=torch.bool))


# ----------------------------------------------------------------------------- models
class _Raw(NamedTuple):
    """What a model would have prepared, kept raw, so that each layer merges it itself."""

    key_padding_mask: torch.Tensor | None
    attn_mask: torch.Tensor | None
    is_causal: bool


def _per_call_masks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the models hand raw masks to every layer, and each layer merge its own (the path of
    ``MultiheadAttention`` with ``key_padding_mask``/``is_causal``): the per-layer reference."""
    forward = MultiheadAttention.forward

    def raw(kpm: Any, am: Any, causal: bool, *_: Any) -> _Raw:
        return _Raw(kpm, am, causal)

    def per_call(self: MultiheadAttention, *args: Any, attn_mask: Any = None, **kw: Any) -> Any:
        if isinstance(attn_mask, _Raw):
            kw.update(key_padding_mask=attn_mask.key_padding_mask, is_causal=attn_mask.is_causal)
            attn_mask = attn_mask.attn_mask
        return forward(self, *args, attn_mask=attn_mask, **kw)

    monkeypatch.setattr(lm_module, "layer_mask", raw)
    monkeypatch.setattr(s2s_module, "layer_mask", raw)
    monkeypatch.setattr(MultiheadAttention, "forward", per_call)


def _lm(variant: str) -> tuple[TransformerLM, torch.Tensor, torch.Tensor]:
    cfg = LMConfig(
        vocab_size=32, d_model=32, n_layers=2, n_heads=4, max_len=16, dropout=0.0,
        attention=variant, kv_heads=None if variant == "diff" else 2, positions="rotary",
    )  # fmt: skip
    model = TransformerLM(cfg, seed=1).double()
    ids = torch.randint(0, 32, (3, 7), generator=torch.Generator().manual_seed(2))
    pad = torch.zeros(3, 7, dtype=torch.bool)
    pad[0, :3] = True  # left padding: the padded queries of row 0 see no key (dead rows)
    pad[2, :1] = True
    return model, ids, pad


def _s2s(variant: str) -> tuple[Seq2SeqTransformer, torch.Tensor, torch.Tensor, list]:
    cfg = Seq2SeqConfig(
        src_vocab_size=30, tgt_vocab_size=31, d_model=32, n_heads=4, n_encoder_layers=2,
        n_decoder_layers=2, max_len=16, dropout=0.0, encoder_attention=variant,
        decoder_attention=variant, cross_attention=variant,
    )  # fmt: skip
    model = Seq2SeqTransformer(cfg, seed=2).double()
    g = torch.Generator().manual_seed(3)
    src, tgt = torch.randint(0, 30, (3, 6), generator=g), torch.randint(0, 31, (3, 5), generator=g)
    sp = torch.zeros(3, 6, dtype=torch.bool)
    sp[1, 4:] = True
    tp = torch.zeros(3, 5, dtype=torch.bool)
    tp[0, 3:] = True
    return model, src, tgt, [(None, None), (sp, tp)]


def _lm_run(model: TransformerLM, ids: torch.Tensor, pad: torch.Tensor) -> list[torch.Tensor]:
    """Logits and gradients (causal, padded), then cached decoding (4 + 1 + 2 tokens)."""
    out: list[torch.Tensor] = []
    for pm in (None, pad):
        model.zero_grad()
        logits = model(ids, padding_mask=pm)
        (logits.logsumexp(-1) * torch.linspace(0.5, 1.5, 7, dtype=logits.dtype)).sum().backward()
        out += [logits.detach()] + [
            p.grad.clone() for p in model.parameters() if p.grad is not None
        ]
        with torch.no_grad():
            caches: list = []
            for lo, hi in ((0, 4), (4, 5), (5, 7)):
                part = None if pm is None else pm[:, :hi]
                logits, caches = model(ids[:, lo:hi], kv_caches=caches, padding_mask=part)
                out.append(logits)
    return out


def _s2s_run(model: Seq2SeqTransformer, src, tgt, masks) -> list[torch.Tensor]:  # type: ignore[no-untyped-def]
    out: list[torch.Tensor] = []
    for sp, tp in masks:
        model.zero_grad()
        logits = model(src, tgt, sp, tp)
        (logits.logsumexp(-1) * torch.linspace(0.5, 1.5, 5, dtype=logits.dtype)).sum().backward()
        out += [logits.detach()] + [
            p.grad.clone() for p in model.parameters() if p.grad is not None
        ]
        with torch.no_grad():
            memory = model.encode(src, sp)
            caches: list = []
            for i, (lo, hi) in enumerate(((0, 2), (2, 3), (3, 5))):
                logits, caches = model.decode(
                    tgt[:, lo:hi], memory if i == 0 else None, sp, kv_caches=caches
                )
                out.append(logits)
    return out


@pytest.mark.parametrize("variant", VARIANTS)
def test_models_with_prepared_masks_equal_per_layer_masks(
    variant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LM (GQA, rotary, left padding, KV cache) and seq2seq (padding, cross, KV cache), float64:
    logits and every gradient bit for bit as with each layer merging its own masks."""
    lm, ids, pad = _lm(variant)
    s2s, src, tgt, masks = _s2s(variant)
    got = _lm_run(lm, ids, pad) + _s2s_run(s2s, src, tgt, masks)
    with monkeypatch.context() as m:
        _per_call_masks(m)
        want = _lm_run(lm, ids, pad) + _s2s_run(s2s, src, tgt, masks)
    assert len(got) == len(want) > 20
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def _count(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> list[int]:
    calls = [0]
    inner = getattr(module, name)

    def counted(*args: Any, **kw: Any) -> Any:
        calls[0] += 1
        return inner(*args, **kw)

    monkeypatch.setattr(module, name, counted)
    return calls


def test_masks_are_merged_and_validated_once_per_forward(monkeypatch: pytest.MonkeyPatch) -> None:
    import gpam.functional._masks as f_masks

    merged = _count(monkeypatch, nn_masks, "merge_masks")
    validated = _count(monkeypatch, f_masks, "_validated_mask")
    lm, ids, pad = _lm("dagpam")
    lm(ids, padding_mask=pad)
    assert (merged[0], validated[0]) == (1, 1)  # 2 layers, one mask
    s2s, src, tgt, masks = _s2s("dagpam")
    merged[0] = validated[0] = 0
    s2s(src, tgt, *masks[1])
    assert (merged[0], validated[0]) == (3, 3)  # encoder, decoder self, cross; 2 layers each


def _record_ops(monkeypatch: pytest.MonkeyPatch, model: torch.nn.Module) -> list[tuple]:
    """``(attn_mask, is_causal)`` of every functional call of the model's attention layers."""
    seen: list[tuple] = []
    for mha in (m for m in model.modules() if isinstance(m, MultiheadAttention)):

        def op(*args: Any, _inner: Any = mha._op, **kw: Any) -> Any:
            seen.append((kw.get("attn_mask"), kw.get("is_causal")))
            return _inner(*args, **kw)

        monkeypatch.setattr(mha, "_op", op)
    return seen


@pytest.mark.parametrize("variant", ["softmax", "dagpam"])
def test_causal_without_padding_reaches_op_as_is_causal(
    variant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    lm, ids, pad = _lm(variant)
    seen = _record_ops(monkeypatch, lm)
    lm.eval()
    with torch.no_grad():
        lm(ids)
        assert seen == [(None, True)] * 2
        seen.clear()
        _, caches = lm(ids[:, :4], kv_caches=[])  # prefill: no past yet
        assert seen == [(None, True)] * 2
        seen.clear()
        _, caches = lm(ids[:, 4:5], kv_caches=caches)  # one new query sees every cached key
        assert seen == [(None, False)] * 2
        seen.clear()
        lm(ids[:, 5:7], kv_caches=caches)  # two new queries over a cache: a mask is needed
        assert all(isinstance(m, PreparedMask) and m.mask is not None for m, _ in seen)
        assert [c for _, c in seen] == [False] * 2
        seen.clear()
        lm(ids, padding_mask=pad)
        assert len({id(m) for m, _ in seen}) == 1  # one prepared mask for both layers
    s2s, src, tgt, _ = _s2s(variant)
    seen = _record_ops(monkeypatch, s2s)
    s2s(src, tgt)  # encoder (2), then per decoder layer: self, cross
    assert seen == [(None, False)] * 2 + [(None, True), (None, False)] * 2
