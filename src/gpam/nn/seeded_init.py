"""Per-parameter initialisation rules, each drawing from its own seeded generator.

A *rule* fills one tensor in place from a ``torch.Generator``, with the distribution the module
gives that parameter at construction (``nn.Linear``'s default, daGPAM's per-head orthogonal map,
diff's ``N(0, 0.1^2)`` lambdas, ...); ``None`` marks a parameter whose construction value is
deterministic (norm weights, starting lambdas, ``-I``) and is kept. Modules list their rules
(``MultiheadAttention.init_rules()``, ``VariantParams.init_rules()``); ``gpam.models.paired_init_``
applies them with one generator per ``(seed, parameter name)`` (:func:`stream_generator`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

#: fills a tensor in place from a generator; None: keep the (deterministic) construction value
Rule = Callable[[Tensor, torch.Generator], object] | None


def stream_seed(seed: int, name: str) -> int:
    """A 63-bit seed from ``(seed, name)`` by SHA-256 (stable across runs and Python versions,
    unlike ``hash()``), so every parameter name has its own stream under each seed."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")
    digest = hashlib.sha256(f"gpam.paired_init/{seed}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def stream_generator(seed: int, name: str) -> torch.Generator:
    """A CPU generator seeded by :func:`stream_seed`."""
    return torch.Generator().manual_seed(stream_seed(seed, name))


def normal(std: float, mean: float = 0.0) -> Rule:
    """``N(mean, std^2)``."""
    return lambda t, g: nn.init.normal_(t, mean=mean, std=std, generator=g)


def randn_scaled(scale: float) -> Rule:
    """``torch.randn(shape) * scale`` (bit-equal to that expression for the same generator)."""
    return lambda t, g: t.copy_(torch.randn(t.shape, generator=g, dtype=t.dtype) * scale)


def xavier_uniform() -> Rule:
    """``nn.init.xavier_uniform_``."""
    return lambda t, g: nn.init.xavier_uniform_(t, generator=g)


def linear_weight() -> Rule:
    """``nn.Linear``'s default weight: Kaiming-uniform with ``a = sqrt(5)``, i.e.
    ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``."""
    return lambda t, g: nn.init.kaiming_uniform_(t, a=math.sqrt(5), generator=g)


def linear_bias(fan_in: int) -> Rule:
    """``nn.Linear``'s default bias: ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` (0 when fan_in is 0)."""
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return lambda t, g: nn.init.uniform_(t, -bound, bound, generator=g)


def linear_default(linear: nn.Linear, prefix: str) -> dict[str, Rule]:
    """Rules of an ``nn.Linear`` left at torch's default init, keyed ``prefix + "weight"`` and
    ``prefix + "bias"``."""
    rules: dict[str, Rule] = {prefix + "weight": linear_weight()}
    if linear.bias is not None:
        rules[prefix + "bias"] = linear_bias(linear.in_features)
    return rules


def kept(module: nn.Module, prefix: str) -> dict[str, Rule]:
    """``None`` (keep) for every parameter of ``module`` (deterministic at construction)."""
    return {prefix + n: None for n, _ in module.named_parameters()}


def orthogonal_heads() -> Rule:
    """An independent random orthogonal matrix per leading index (``(H, D, D)``), drawn one
    after the other from the generator, as daGPAM's ``neg_init="orthogonal"`` does."""

    def fill(t: Tensor, g: torch.Generator) -> None:
        for i in range(t.shape[0]):
            nn.init.orthogonal_(t[i], generator=g)

    return fill
