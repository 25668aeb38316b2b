"""Gated attention's parameter: the gate projection ``gate_proj`` (Qiu et al. 2025, G1).

``gate = sigmoid(x W_g (+ b))`` from the layer's query-side input x (after the pre-norm in a
pre-norm model), head-specific: ``attn_kwargs={"gate_mode": "elementwise"}`` (default; W_g is
E -> H*D, one gate per head and dimension) or ``"headwise"`` (E -> H, one gate per head).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from gpam.functional.registry import Op
from gpam.nn.seeded_init import Rule, kept, linear_default
from gpam.nn.variant import LayerSpec, Query, QueryProj, VariantParams, heads

GATE_MODES = ("elementwise", "headwise")


class GatedParams(VariantParams):
    """``gate_proj`` (E -> H*D or E -> H; bias as the layer's projections).

    A fresh layer uses ``nn.Linear``'s initialisation. ``pretrained=True`` (``gpam.hf.convert``)
    starts the weight (and bias) at 0, so every gate starts at exactly 1/2: a sigmoid gate can
    never be the identity, so a converted model cannot start equal to the pretrained one (its
    attention outputs start at half; fine-tune afterwards).
    """

    OPTIONS = ("gate_mode",)
    OWNED_KWARGS = ("gate",)

    def _build(self, spec: LayerSpec, query_proj: QueryProj, pretrained: bool) -> None:
        mode = spec.options.get("gate_mode", "elementwise")
        if mode not in GATE_MODES:
            raise ValueError(f"gate_mode must be one of {GATE_MODES}, got {mode!r}")
        self.gate_mode = mode
        width = spec.num_heads * (spec.head_dim if mode == "elementwise" else 1)
        self.gate_proj = nn.Linear(spec.embed_dim, width, bias=spec.bias, **spec.factory)
        self._pretrained = pretrained
        if pretrained:
            with torch.no_grad():
                for p in self.gate_proj.parameters():
                    p.zero_()

    def init_rules(self) -> dict[str, Rule]:
        if self._pretrained:
            return kept(self.gate_proj, "gate_proj.")
        return linear_default(self.gate_proj, "gate_proj.")

    @property
    def uses_input(self) -> bool:
        return True

    def gate(self, x: Tensor) -> Tensor:
        """``sigmoid(x W_g)``: x (B, L, E) -> (B, H, L, D) (elementwise) or (B, H, L, 1)."""
        return heads(torch.sigmoid(self.gate_proj(x)), self.spec.num_heads)

    def attend(self, op: Op, query: Query, k: Tensor, v: Tensor, **common: Any) -> Any:
        return op(query.q, k, v, self.gate(query.x), **common)  # type: ignore[arg-type]

    def extra_repr(self) -> str:
        return f"gate_mode={self.gate_mode!r}"
