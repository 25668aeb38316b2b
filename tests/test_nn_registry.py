"""One registry serves every variant in the three places that dispatch (functional, layer, HF
adapter); the layer's one return rule; keys the layer owns cannot be overridden."""

from __future__ import annotations

import pytest
import torch

import gpam
import gpam.functional as GF
from gpam.functional.registry import REGISTRY, variant
from gpam.hf.params import build_state
from gpam.nn import AttentionOutput, KVCache, VariantParams
from gpam.nn.variant import Query, params_class

E, H = 16, 4


@pytest.mark.parametrize("name", gpam.VARIANTS)
def test_every_variant_is_served_in_all_three_places(name: str) -> None:
    assert name in REGISTRY and variant(name).info.name == name
    g = torch.Generator().manual_seed(0)
    q, qn, k, v = (torch.randn(2, H, 5, 4, generator=g, dtype=torch.float64) for _ in range(4))
    # functional: the registry op, called through gpam.functional.attention by name
    args, kwargs = variant(name).example(q, qn, k, v, 0.3)
    q_neg = kwargs.pop("q_neg", None)
    out = GF.attention(name, *args, q_neg=q_neg, is_causal=True, **kwargs)
    assert torch.isfinite(out).all() and out.shape[-2] == 5
    # layer: its parameter module is the registry's class (or the parameter-free base)
    mha = gpam.MultiheadAttention(E, H, attention=name, dtype=torch.float64)
    assert type(mha.variant) is (params_class(name) or VariantParams)
    x = torch.randn(2, 5, E, dtype=torch.float64)
    assert mha(x, is_causal=True).shape == (2, 5, E)
    # HF adapter: the same module class, built from a pretrained query projection
    if not variant(name).info.hf_convertible:
        assert variant(name).info.hf_note  # says why conversion is refused
        return
    w, b = torch.randn(E, E, dtype=torch.float64), torch.randn(E, dtype=torch.float64)
    state = build_state(name, num_heads=H, head_dim=E // H, query_proj=(w, b))
    assert type(state) is (params_class(name) or VariantParams)
    qh = (x @ w.T + b).view(2, 5, H, E // H).transpose(1, 2)
    ident = lambda t: t  # noqa: E731
    res = state.attend(variant(name).op, Query(x, qh, lambda: qh, ident), qh, qh, is_causal=True)
    assert res.shape == (2, H, 5, E // H) and torch.isfinite(res).all()


@pytest.mark.parametrize("name", ["softmax", "dagpam", "diff"])
def test_one_return_rule(name: str) -> None:
    mha = gpam.MultiheadAttention(E, H, attention=name)
    x = torch.randn(2, 5, E)
    assert isinstance(mha(x), torch.Tensor)
    res = mha(x, need_weights=True)
    assert isinstance(res, AttentionOutput) and res.cache is None
    assert res.weights.shape == (2, H // 2 if name == "diff" else H, 5, 5)
    cache = KVCache()
    res = mha(x[:, :3], kv_cache=cache, is_causal=True)
    assert isinstance(res, AttentionOutput) and res.weights is None and res.cache is cache
    both = mha(x[:, 3:], kv_cache=cache, is_causal=True, need_weights=True)
    torch.testing.assert_close(both.output, mha(x, is_causal=True)[:, 3:])
    assert both.weights.shape[-2:] == (2, 5) and both.cache.length == 5


@pytest.mark.parametrize("key", ["is_causal", "attn_mask", "dropout_p", "return_weights"])
def test_attn_kwargs_may_not_override_what_the_layer_sets(key: str) -> None:
    with pytest.raises(ValueError, match=key):
        gpam.MultiheadAttention(E, H, attention="dagpam", attn_kwargs={key: False})
    from gpam.models import LMConfig

    with pytest.raises(ValueError, match=key):
        LMConfig(10, d_model=E, n_heads=H, attn_kwargs={"softmax": {key: False}})


def test_attn_kwargs_may_not_set_what_the_variant_computes() -> None:
    with pytest.raises(ValueError, match="lam_neg"):
        gpam.MultiheadAttention(E, H, attention="dagpam", attn_kwargs={"lam_neg": 0.1})
    with pytest.raises(ValueError, match="'lam'"):
        gpam.MultiheadAttention(E, H, attention="diff2", attn_kwargs={"lam": 0.1})


def test_a_causal_lm_stays_causal() -> None:
    """Issue 20 item 3: ``attn_kwargs={"dagpam": {"is_causal": False}}`` used to turn causal
    masking off silently; now the config refuses it (and with it the leak below cannot happen)."""
    from gpam.models import LMConfig

    with pytest.raises(ValueError, match="is_causal"):
        LMConfig(10, d_model=E, n_heads=H, attn_kwargs={"dagpam": {"is_causal": False}})


def test_state_dict_keys_are_flat_and_old_keys_load() -> None:
    mha = gpam.MultiheadAttention(E, H, attention="dagpam", lambda_mode="token")
    keys = set(mha.state_dict())
    assert {"neg_weight", "lambda_proj.weight", "lambda_proj.bias"} <= keys
    assert not any(k.startswith("variant.") for k in keys)
    assert "variant.neg_weight" in dict(mha.named_parameters())
    other = gpam.MultiheadAttention(E, H, attention="dagpam", lambda_mode="token")
    other.load_state_dict(mha.state_dict(), strict=True)
    assert torch.equal(other.neg_weight, mha.neg_weight)
    assert mha.neg_weight is mha.variant.neg_weight  # read through the layer


def test_from_torch_is_a_drop_in_for_bool_masks() -> None:
    """Issue 20 item 5: torch's bool attn_mask is True = masked, gpam's True = keep; a layer
    made by from_torch reads masks as torch does, so the same call gives the same output."""
    torch.manual_seed(0)
    ref = torch.nn.MultiheadAttention(E, H, batch_first=True).double().eval()
    ours = gpam.MultiheadAttention.from_torch(ref, attention="softmax").eval()
    assert ours.mask_convention == "torch"
    x = torch.randn(2, 5, E, dtype=torch.float64)
    masked = torch.zeros(5, 5, dtype=torch.bool)
    masked[:, 3] = True  # torch: True = this key is not attended
    want, _ = ref(x, x, x, attn_mask=masked, need_weights=False)
    torch.testing.assert_close(ours(x, attn_mask=masked), want)
    causal = torch.ones(5, 5, dtype=torch.bool).triu(1)
    want, _ = ref(x, x, x, attn_mask=causal, need_weights=False)
    torch.testing.assert_close(ours(x, attn_mask=causal), want)
    float_mask = torch.zeros(5, 5, dtype=torch.float64).masked_fill(masked, float("-inf"))
    want, _ = ref(x, x, x, attn_mask=float_mask, need_weights=False)
    torch.testing.assert_close(ours(x, attn_mask=float_mask), want)
    sdpa = gpam.MultiheadAttention.from_torch(ref, attention="softmax", mask_convention="sdpa")
    torch.testing.assert_close(sdpa.eval()(x, attn_mask=~masked), ours(x, attn_mask=masked))
