"""Differential Transformer V2's parameter: ``lambda_proj`` (E -> H, no bias).

The layer's query projection makes 2H query heads (heads 2i, 2i+1 = positive and negative query
of head i); ``lam = sigmoid(lambda_proj(x))`` per token and head, x the query-side input.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from gpam.functional.registry import Op
from gpam.nn.seeded_init import Rule, linear_default
from gpam.nn.variant import LayerSpec, Query, QueryProj, VariantParams


class Diff2Params(VariantParams):
    """``lambda_proj``; the second half of the layer's query projection counts as extra too."""

    OWNED_KWARGS = ("lam",)
    QUERY_SETS_IN_PROJ = 2

    def _build(self, spec: LayerSpec, query_proj: QueryProj, pretrained: bool) -> None:
        self.lambda_proj = nn.Linear(spec.embed_dim, spec.num_heads, bias=False, **spec.factory)

    def init_rules(self) -> dict[str, Rule]:
        return linear_default(self.lambda_proj, "lambda_proj.")

    @property
    def uses_input(self) -> bool:
        return True

    def diff2_lambda(self, x: Tensor) -> Tensor:
        """Diff V2's per-token lambda ``sigmoid(lambda_proj(x))``: x (B, L, E) -> (B, H, L, 1)."""
        return torch.sigmoid(self.lambda_proj(x)).transpose(1, 2).unsqueeze(-1)

    def attend(self, op: Op, query: Query, k: Tensor, v: Tensor, **common: Any) -> Any:
        return op(query.q, k, v, lam=self.diff2_lambda(query.x), **common)

    def extra_numel(self) -> int:
        e = self.spec.embed_dim
        return super().extra_numel() + e * e + (e if self.spec.bias else 0)
