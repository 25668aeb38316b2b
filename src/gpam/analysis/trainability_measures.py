"""What ``gpam analyze trainability`` measures on a model, at initialisation and after training.

On a fixed probe batch (the first ``probe_batch`` held-out windows), in a float64 copy:

* ``jacobian_rel``: per layer, the logit-Jacobian norm relative to a uniform row over the
  visible keys at the attention input of the model's own forward
  (:func:`gpam.analysis.phase_maps.jacobian_rel`, causal; row 0, one key, is skipped), mean over
  batch, heads and rows; ``None`` for a variant without one (coda);
* ``residual_stack``: the relative Frobenius residual after each of the model's attention layers
  run alone as an ``attention_norm`` stack (``X <- SA(rmsnorm(X))``, causal) from the embedded
  tokens, as ``gpam analyze phase --checkpoint`` measures it;
* ``residual_model``: the relative residual of the hidden state after each full block.

During training the first layer's query-gradient norm ``||dL/dW_Q||_F`` is read after every
backward (before clipping).
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from gpam.analysis.measures import relative_residual_fro
from gpam.analysis.phase_maps import jacobian_rel
from gpam.analysis.trainability_model import SkipLM


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None


@torch.no_grad()
def probe_measures(model: SkipLM, ids: Tensor) -> dict[str, list[float | None]]:
    """Per-layer ``jacobian_rel``, ``residual_stack`` and ``residual_model`` on ``ids`` (B, T)
    (see the module doc); the model itself is not changed."""
    m = copy.deepcopy(model).double().eval()
    x = m.embed_ids(ids)
    xs = x
    out: dict[str, list[float | None]] = {"jacobian_rel": [], "residual_stack": []}
    out["residual_model"] = []
    for blk in m.blocks:
        jac = jacobian_rel(blk.attn, blk.norm1(x), is_causal=True)
        out["jacobian_rel"].append(None if jac is None else _finite(float(jac[..., 1:].mean())))
        x = blk(x)
        out["residual_model"].append(_finite(float(relative_residual_fro(x).mean())))
        xs = blk.attn(F.rms_norm(xs, (xs.shape[-1],)), is_causal=True)
        out["residual_stack"].append(_finite(float(relative_residual_fro(xs).mean())))
    return out


def layer_mean(values: list[float | None]) -> float | None:
    """Mean over layers; None if any layer has None."""
    if not values or any(v is None for v in values):
        return None
    return sum(values) / len(values)  # type: ignore[arg-type]


def grad_summary(norms: list[float | None]) -> dict[str, float | None]:
    """``first``, ``last``, ``min``, ``max`` and ``last_over_first`` of a gradient-norm trace."""
    vals = [v for v in norms if v is not None]
    first = norms[0] if norms else None
    last = norms[-1] if norms else None
    ratio = last / first if first and last is not None else None
    return {
        "first": first,
        "last": last,
        "min": min(vals) if vals else None,
        "max": max(vals) if vals else None,
        "last_over_first": ratio,
    }
