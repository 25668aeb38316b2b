"""The attention-core implementations that ``gpam bench`` times: one callable per method.

Every method maps ``(q, q_neg, k, v)``, queries (B, H, L, D) and keys/values (B, Hkv, L, D) with
Hkv dividing H (grouped-query attention, K/V not copied), to an output (B, H, L, D):

* ``sdpa``: ``F.scaled_dot_product_attention`` softmax (the baseline of every ratio);
* each name in ``gpam.VARIANTS``: its registry op, called as its registry ``example`` lays the
  inputs out (daGPAM uses ``q_neg``; ``diff2`` takes ``(q, q_neg)`` as the head pairs
  (2i, 2i+1) and a fixed ``lam``; ``diff`` pairs sub-heads with values of width 2D);
* ``dagpam_token``: daGPAM with a per-token lambda tensor (B, H, L, 1) (``lambda_mode="token"``);
* ``dagpam_naive``: daGPAM's explicit path (``return_weights=True``: W is materialised, L x L);
* ``dagpam_1call``: the library's one-call daGPAM path (2H query heads sharing K/V through
  grouped-query attention; opt-in per device type by ``ONE_CALL_DEVICES``), exact, linear memory;
* ``dagpam_fused``: the Triton kernel of ``gpam.kernels`` (only where it is available).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

import gpam
from gpam.functional import QUADRATIC, attention, dagpam_attention, variant
from gpam.functional._gqa import sdpa_gqa
from gpam.functional.dagpam import _sdpa_one_call
from gpam.kernels import dagpam_fused, fused_dagpam_available

Method = Callable[[Tensor, Tensor, Tensor, Tensor, bool, float], Tensor]
EXTRA_METHODS: tuple[str, ...] = (
    "sdpa", "dagpam_token", "dagpam_naive", "dagpam_1call", "dagpam_fused",
)  # fmt: skip


def sdpa(q: Tensor, qn: Tensor, k: Tensor, v: Tensor, causal: bool, lam: float) -> Tensor:
    """Softmax attention by ``F.scaled_dot_product_attention`` (``enable_gqa`` for Hkv < H)."""
    return sdpa_gqa(q, k, v, None, causal, 0.0, q.shape[-1] ** -0.5)


def dagpam_naive(q: Tensor, qn: Tensor, k: Tensor, v: Tensor, causal: bool, lam: float) -> Tensor:
    """daGPAM through the library's explicit path: W (B, H, L, L) is materialised, then W V."""
    out, _ = dagpam_attention(q, qn, k, v, lam_neg=lam, is_causal=causal, return_weights=True)
    return out


def dagpam_1call(q: Tensor, qn: Tensor, k: Tensor, v: Tensor, causal: bool, lam: float) -> Tensor:
    """daGPAM through the library's one-call path (2H query heads over shared K/V, GQA)."""
    o_pos, o_neg = _sdpa_one_call(q, qn, k, v, None, causal, 0.0, q.shape[-1] ** -0.5)
    return torch.lerp(o_neg, o_pos, 1.0 + lam)


def dagpam_token(q: Tensor, qn: Tensor, k: Tensor, v: Tensor, causal: bool, lam: float) -> Tensor:
    """daGPAM with lam_neg given per head and token as a (B, H, L, 1) tensor (all equal to lam)."""
    lam_t = torch.full((*q.shape[:3], 1), float(lam), dtype=q.dtype, device=q.device)
    return attention("dagpam", q, k, v, q_neg=qn, lam_neg=lam_t, is_causal=causal)  # type: ignore[return-value]


def fused(q: Tensor, qn: Tensor, k: Tensor, v: Tensor, causal: bool, lam: float) -> Tensor:
    """The Triton kernel (CUDA)."""
    return dagpam_fused(q, qn, k, v, 1.0 + lam, lam, causal, None)


def _variant(name: str) -> Method:
    entry = variant(name)

    def run(q: Tensor, qn: Tensor, k: Tensor, v: Tensor, causal: bool, lam: float) -> Tensor:
        args, kwargs = entry.example(q, qn, k, v, lam)  # the variant's layout (registry)
        return entry.op(*args, is_causal=causal, **kwargs)  # type: ignore[return-value]

    run.__doc__ = f"gpam.functional.attention({name!r}, ...) in the layout of its registry example"
    return run


def all_methods() -> tuple[str, ...]:
    """Every method name ``gpam bench`` knows (``sdpa`` first)."""
    return ("sdpa", *gpam.VARIANTS, *EXTRA_METHODS[1:])


def get_method(name: str) -> Method:
    """The callable for a method name (see :func:`all_methods`)."""
    table: dict[str, Method] = {
        "sdpa": sdpa,
        "dagpam_token": dagpam_token,
        "dagpam_naive": dagpam_naive,
        "dagpam_1call": dagpam_1call,
        "dagpam_fused": fused,
    }
    if name in table:
        return table[name]
    if name in gpam.VARIANTS:
        return _variant(name)
    raise ValueError(f"method must be one of {', '.join(all_methods())}; got {name!r}")


def method_available(name: str, q: Tensor) -> bool:
    """False for ``dagpam_fused`` where the kernel cannot run on ``q``; True otherwise."""
    return fused_dagpam_available(q) if name == "dagpam_fused" else True


def quadratic(name: str) -> bool:
    """Whether the method materialises L x L matrices (memory quadratic in L)."""
    return name == "dagpam_naive" or name in QUADRATIC
