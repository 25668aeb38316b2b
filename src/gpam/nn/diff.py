"""Differential attention's parameters (Ye et al. 2024): the lambda vectors and the sub-layer norm.

The layer's ``num_heads`` H sub-heads of width d pair up into H/2 differential heads (adjacent
sub-heads (2i, 2i+1)); the values of a pair form one head of width 2d. After the core, each head
goes through an RMSNorm over 2d and is scaled by ``1 - lam_init``, then is split back into two
sub-heads so that the layer's output projection sees H heads of width d.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from gpam.functional import PreparedMask
from gpam.functional.registry import Op
from gpam.nn.seeded_init import Rule, kept, randn_scaled
from gpam.nn.variant import LayerSpec, Query, QueryProj, VariantParams


def diff_lambda_init(layer_idx: int) -> float:
    """Ye et al.'s depth schedule ``0.8 - 0.6 exp(-0.3 * layer_idx)`` (0-based layer index)."""
    return 0.8 - 0.6 * math.exp(-0.3 * layer_idx)


class DiffParams(VariantParams):
    """``lambda_q1``, ``lambda_k1``, ``lambda_q2``, ``lambda_k2`` (d each, N(0, 0.1^2)) and
    ``subln`` (RMSNorm over 2d, eps 1e-5); ``lam_init`` from the layer's depth."""

    OWNED_KWARGS = ("q2", "k2", "lam")

    def _build(self, spec: LayerSpec, query_proj: QueryProj, pretrained: bool) -> None:
        d = spec.head_dim
        self.lam_init = diff_lambda_init(spec.layer_idx)
        for name in ("lambda_q1", "lambda_k1", "lambda_q2", "lambda_k2"):
            setattr(self, name, nn.Parameter(torch.randn(d, **spec.factory) * 0.1))
        self.subln = nn.RMSNorm(2 * d, eps=1e-5, **spec.factory)

    def init_rules(self) -> dict[str, Rule]:
        names = ("lambda_q1", "lambda_k1", "lambda_q2", "lambda_k2")
        return {n: randn_scaled(0.1) for n in names} | kept(self.subln, "subln.")

    @classmethod
    def check(cls, spec: LayerSpec) -> None:
        if spec.num_heads % 2 or spec.kv_heads % 2:
            raise ValueError(
                "attention='diff' pairs sub-heads: num_heads and kv_heads must be even, got "
                f"{spec.num_heads} and {spec.kv_heads}"
            )

    def diff_lambda(self) -> Tensor:
        """Ye et al.'s reparameterised lambda (a scalar tensor)."""
        lam1 = torch.exp(torch.sum(self.lambda_q1 * self.lambda_k1).float())
        lam2 = torch.exp(torch.sum(self.lambda_q2 * self.lambda_k2).float())
        return (lam1 - lam2 + self.lam_init).to(self.lambda_q1.dtype)

    def attend(self, op: Op, query: Query, k: Tensor, v: Tensor, **common: Any) -> Any:
        q = query.q
        b, _, s, d = v.shape
        # value heads: kv_heads sub-heads of width d become kv_heads/2 heads of width 2d
        v2 = v.view(b, -1, 2, s, d).permute(0, 1, 3, 2, 4).reshape(b, -1, s, 2 * d)
        mask = common.get("attn_mask")
        prepared = isinstance(mask, PreparedMask)
        m = mask.mask if prepared else mask
        if m is not None and m.dim() == 4 and m.shape[1] not in (1, q.shape[1] // 2):
            # a per-sub-head mask: use the first sub-head's
            common["attn_mask"] = mask.select_heads(slice(0, None, 2)) if prepared else m[:, 0::2]
        res = op(
            q[:, 0::2], k[:, 0::2], v2, q2=q[:, 1::2], k2=k[:, 1::2], lam=self.diff_lambda(),
            **common,
        )  # fmt: skip
        out, w = res if isinstance(res, tuple) else (res, None)
        out = self.subln(out) * (1.0 - self.lam_init)  # (B, H/2, L, 2d)
        # back to H sub-heads of width d so that the layer's reshape to E holds
        out = out.view(b, -1, out.shape[2], 2, d).permute(0, 1, 3, 2, 4)
        out = out.reshape(b, -1, out.shape[3], d)
        return (out, w) if w is not None else out
