"""Paired initialisation: every parameter from its own stream, seeded by (seed, parameter name).

Plain construction (``torch.manual_seed(s); TransformerLM(cfg)``) draws every parameter from the
one global stream in construction order, so a variant with extra parameters (daGPAM's negative
query map) shifts every parameter built after it: two variants under the same seed then differ
in their shared weights too. :func:`paired_init_` redraws each parameter from a generator seeded
by ``(seed, name)`` with the distribution construction gives it, so under one seed every
parameter two models share (same name and shape, same distribution) is bit-identical, and adding
a variant or an option changes only the parameters it owns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import nn

from gpam.nn import MultiheadAttention
from gpam.nn.seeded_init import Rule, kept, normal, stream_generator, xavier_uniform

M = TypeVar("M", bound=nn.Module)

_NORMS = (nn.LayerNorm, nn.RMSNorm)


@dataclass(frozen=True)
class InitScheme:
    """How a model initialises the layers it owns (see ``gpam.models.layers.init_weights``).

    ``embed_std``: embeddings ``N(0, embed_std^2)``; ``linear``: ``"normal"`` (``N(0, 0.02^2)``)
    or ``"xavier"`` (Xavier-uniform) weights, zero biases; ``residual_std``: the std of the
    MLPs' output projections (``mlp.proj``) when it differs (GPT-2's ``0.02/sqrt(2 n_layers)``).
    """

    embed_std: float = 0.02
    linear: str = "normal"
    residual_std: float | None = None


def init_rules(model: nn.Module) -> dict[str, Rule]:
    """The construction distribution of every parameter of ``model`` (a ``TransformerLM``,
    ``Seq2SeqTransformer`` or any module whose parameters sit in ``gpam.MultiheadAttention``,
    ``nn.Linear``, ``nn.Embedding`` and norms), keyed by ``named_parameters()`` names."""
    scheme = getattr(model, "init_scheme", InitScheme())
    rules: dict[str, Rule] = {}
    inside_attention: set[str] = set()
    for mname, m in model.named_modules():
        prefix = f"{mname}." if mname else ""
        if any(mname.startswith(a) for a in inside_attention):
            continue
        if isinstance(m, MultiheadAttention):
            inside_attention.add(prefix)
            rules |= {prefix + k: r for k, r in m.init_rules().items()}
        elif isinstance(m, nn.Linear):
            std = scheme.residual_std if mname.endswith("mlp.proj") else None
            if std is not None:
                weight = normal(std)
            else:
                weight = xavier_uniform() if scheme.linear == "xavier" else normal(0.02)
            rules[prefix + "weight"] = weight
            if m.bias is not None:
                rules[prefix + "bias"] = None  # zeros
        elif isinstance(m, nn.Embedding):
            rules[prefix + "weight"] = normal(scheme.embed_std)
        elif isinstance(m, _NORMS):
            rules |= kept(m, prefix)
    return rules


def paired_init_(model: M, seed: int) -> M:
    """Re-initialise a freshly built ``model`` in place, each parameter from a CPU generator
    seeded by SHA-256 of ``(seed, its name)``, with the distribution construction gives it
    (deterministic starting values, such as norm weights, zero biases, daGPAM's fixed lambdas or
    ``-I``, are kept). Returns ``model``.

    Values are drawn in float32 (float64 parameters in float64) on the CPU and copied to the
    parameter's device and dtype, so they do not depend on the device. Tied parameters are drawn
    once, under the first name ``named_parameters()`` gives them. Raises a ValueError naming any
    parameter no module describes (a new layer type must list its rules).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    rules = init_rules(model)
    params = list(model.named_parameters())
    missing = [n for n, _ in params if n not in rules]
    if missing:
        raise ValueError(
            f"paired_init_: no initialisation rule for parameter(s) {missing}; the modules "
            "holding them must describe their init (init_rules)"
        )
    with torch.no_grad():
        for name, p in params:
            rule = rules[name]
            if rule is None:
                continue
            dtype = torch.float64 if p.dtype == torch.float64 else torch.float32
            value = torch.empty(p.shape, dtype=dtype)
            rule(value, stream_generator(seed, name))
            p.copy_(value)
        for m in model.modules():
            if isinstance(m, MultiheadAttention):
                m.sync_neg_identity()  # q_neg_proj = -q_proj where daGPAM starts so
    return model
