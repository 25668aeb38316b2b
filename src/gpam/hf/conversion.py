"""Turn a loaded transformers model into a gpam model; load it back."""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gpam.functional.registry import HF_CONVERTIBLE
from gpam.hf._compat import require_transformers
from gpam.hf.attention import ATTN_IMPLEMENTATION, attach_hooks, register
from gpam.hf.families import SUPPORTED_MODEL_TYPES, attention_layers, family_of
from gpam.hf.params import LAMBDA_MODES, NEG_INITS, NEG_QUERIES, GpamAttentionState

#: variants ``convert`` can route a pretrained layer through (from ``gpam.functional.registry``;
#: ``diff`` needs half-width sub-heads and ``diff2`` cannot start equal to the pretrained model,
#: see :func:`_check_args`).
CONVERTIBLE: tuple[str, ...] = HF_CONVERTIBLE
CONFIG_KEY = "gpam"


def _check_args(
    attention: object,
    lam_neg: object,
    learnable_lambda: object,
    neg_query: object,
    lambda_mode: object = None,
    neg_init: object = "orthogonal",
) -> None:
    if attention == "diff":
        raise ValueError(
            "attention='diff' cannot convert a pretrained model: Differential attention splits "
            "each head into half-width sub-heads, which changes the projection shapes; use one "
            f"of {', '.join(CONVERTIBLE)}"
        )
    if attention == "diff2":
        raise ValueError(
            "attention='diff2' cannot convert a pretrained model exactly: Diff V2's output is "
            "attn_pos - sigmoid(lambda_proj(x)) * attn_neg with lambda in (0, 1), so at start it "
            "differs from the pretrained softmax layer (rows sum to 1 - lambda < 1, and the "
            "negative query heads are new); use attention='dagpam' (lam_neg=0, or "
            "lambda_mode='token' for a per-token lambda), which starts exactly equal"
        )
    if attention not in CONVERTIBLE:
        raise ValueError(f"attention must be one of {', '.join(CONVERTIBLE)}; got {attention!r}")
    if isinstance(lam_neg, bool) or not isinstance(lam_neg, (int, float)):
        raise TypeError(f"lam_neg must be a float >= 0, got {type(lam_neg).__name__}")
    if not math.isfinite(lam_neg) or lam_neg < 0:
        raise ValueError(f"lam_neg must be a finite float >= 0, got {lam_neg!r}")
    if not isinstance(learnable_lambda, bool):
        raise TypeError(f"learnable_lambda must be a bool, got {type(learnable_lambda).__name__}")
    if neg_query not in NEG_QUERIES:
        raise ValueError(f"neg_query must be one of {', '.join(NEG_QUERIES)}; got {neg_query!r}")
    if lambda_mode is not None and lambda_mode not in LAMBDA_MODES:
        raise ValueError(
            f"lambda_mode must be None or one of {', '.join(LAMBDA_MODES)}; got {lambda_mode!r}"
        )
    if neg_init not in NEG_INITS:
        raise ValueError(f"neg_init must be one of {', '.join(NEG_INITS)}; got {neg_init!r}")


def _choose(found: list[tuple[str, nn.Module]], layers: Iterable[int] | None) -> list[int]:
    n = len(found)
    if layers is None:
        return list(range(n))
    if isinstance(layers, (str, bytes)) or not isinstance(layers, Iterable):
        raise TypeError(f"layers must be None or an iterable of ints, got {type(layers).__name__}")
    chosen = list(layers)
    for i in chosen:
        if isinstance(i, bool) or not isinstance(i, int) or not -n <= i < n:
            raise ValueError(f"layers must hold ints in [0, {n}) (the model has {n}); got {i!r}")
    chosen = sorted({i % n for i in chosen})
    if not chosen:
        raise ValueError("layers must name at least one layer (or be None for all)")
    return chosen


def is_converted(model: nn.Module) -> bool:
    """True when ``model`` holds gpam attention layers (made by :func:`convert`)."""
    return any(isinstance(m, GpamAttentionState) for m in model.modules())


def convert(
    model: nn.Module,
    attention: str = "dagpam",
    lam_neg: float = 0.0,
    learnable_lambda: bool = True,
    neg_query: str = "linear",
    layers: Iterable[int] | None = None,
    lambda_mode: str | None = None,
    neg_init: str = "orthogonal",
) -> nn.Module:
    """Route the attention of a loaded transformers model through gpam, in place; returns it.

    Each chosen self-attention layer (``layers``: indices in model order, None = all) gets a
    :class:`~gpam.hf.params.GpamAttentionState` child named ``gpam`` holding the per-head
    ``lam_neg`` (learnable, kept >= 0, or fixed) and the negative-query map (``neg_query``:
    ``"linear"``, ``"full"``, ``"negate"`` or ``"relu_linear"``; ``neg_init="neg_identity"``
    starts the map at -I instead of random orthogonal). ``lambda_mode`` overrides
    ``learnable_lambda`` when given: ``"fixed"``, ``"head"`` (= ``learnable_lambda=True``) or
    ``"token"`` (a per-token ``lam_neg(x) = max(x A^T + c, 0)`` of the layer input, A = 0 and
    c = ``lam_neg`` at start: exact at start with ``lam_neg=0``). The model's attention
    implementation becomes
    ``"gpam"`` (registered with ``transformers.AttentionInterface`` and ``AttentionMaskInterface``).
    With ``attention="dagpam", lam_neg=0`` the outputs equal the original model's.
    ``attention`` may also be ``"softmax"`` (same function, computed by gpam) or ``"cog"``,
    ``"coda"``, ``"sigmoid"``, ``"centered"`` (no new parameters; outputs change, fine-tune
    afterwards). ``"diff2"`` and ``"diff"`` are refused: neither can start equal to the
    pretrained layer (see the error message and docs/huggingface.md).
    The settings are stored in ``model.config.gpam`` so :func:`load_converted` can rebuild it.
    Supported model types: see :data:`gpam.hf.SUPPORTED_MODEL_TYPES`.
    """
    transformers = require_transformers()
    if not isinstance(model, transformers.PreTrainedModel):
        raise TypeError(f"model must be a transformers PreTrainedModel, got {type(model).__name__}")
    _check_args(attention, lam_neg, learnable_lambda, neg_query, lambda_mode, neg_init)
    if lambda_mode is None:
        lambda_mode = "head" if learnable_lambda else "fixed"
    if is_converted(model):
        raise ValueError("model is already converted by gpam.hf.convert")
    fam = family_of(model)
    found = attention_layers(model, fam)
    chosen = _choose(found, layers)
    for i in chosen:
        _, module = found[i]
        state = GpamAttentionState(
            attention=attention,
            num_heads=fam.num_heads(module),
            head_dim=fam.head_dim(module),
            lam_neg=float(lam_neg),
            learnable_lambda=learnable_lambda,
            neg_query=neg_query,
            query_proj=fam.query_proj(module),
            lambda_mode=lambda_mode,
            neg_init=neg_init,
        )
        module.add_module("gpam", state)
        attach_hooks(module, fam.rotary)
    register()
    model.set_attn_implementation(ATTN_IMPLEMENTATION)
    if model.config._attn_implementation != ATTN_IMPLEMENTATION:
        raise RuntimeError(
            f"{type(model).__name__} did not accept attn_implementation={ATTN_IMPLEMENTATION!r}"
        )
    setattr(
        model.config,
        CONFIG_KEY,
        {
            "attention": attention,
            "lam_neg": float(lam_neg),
            "learnable_lambda": lambda_mode == "head",
            "neg_query": neg_query,
            "lambda_mode": lambda_mode,
            "neg_init": neg_init,
            "layers": chosen if layers is not None else None,
            "family": fam.name,
        },
    )
    return model


def gpam_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters :func:`convert` added (negative queries and learnable lambdas)."""
    return [p for m in model.modules() if isinstance(m, GpamAttentionState) for p in m.parameters()]


def lambdas(model: nn.Module) -> dict[str, list[float]]:
    """Current per-head ``lam_neg`` of every converted daGPAM layer, by module name.

    For ``lambda_mode="token"`` layers: the value for a zero input, ``max(c, 0)`` per head.
    """

    def per_head(m: GpamAttentionState) -> list[float]:
        lam = m.lambda_proj.bias.clamp_min(0.0) if m.lambda_mode == "token" else m.lam_neg()
        return lam.detach().float().cpu().tolist()

    return {
        name.removesuffix(".gpam"): per_head(m)
        for name, m in model.named_modules()
        if isinstance(m, GpamAttentionState) and m.attention == "dagpam"
    }


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def _checkpoint_files(path: Path) -> list[Path]:
    index = path / "model.safetensors.index.json"
    if index.is_file():
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [path / n for n in names]
    single = path / "model.safetensors"
    if single.is_file():
        return [single]
    raise ValueError(f"path: no model.safetensors (or its index) in {str(path)!r}")


def load_converted(
    path: str | os.PathLike, model_class: type | None = None, **from_pretrained_kwargs: Any
) -> nn.Module:
    """Load a model saved with ``save_pretrained`` after :func:`convert`.

    Loads the base weights with ``model_class.from_pretrained`` (default: the class named in
    ``config.architectures``), re-applies :func:`convert` with the settings stored in
    ``config.gpam`` and fills the gpam parameters from the checkpoint's safetensors.
    """
    transformers = require_transformers()
    from safetensors import safe_open

    path = Path(path)
    if not (path / "config.json").is_file():
        raise ValueError(f"path: {str(path)!r} holds no config.json")
    config = transformers.AutoConfig.from_pretrained(path)
    settings = getattr(config, CONFIG_KEY, None)
    if not isinstance(settings, dict):
        raise ValueError(
            f"path: {str(path)!r} is not a gpam-converted model (config.json has no 'gpam' entry); "
            "load it with from_pretrained and call gpam.hf.convert"
        )
    if model_class is None:
        archs = getattr(config, "architectures", None) or []
        model_class = getattr(transformers, archs[0], None) if archs else None
        if model_class is None:
            raise ValueError(
                f"path: cannot tell the model class from config.architectures={archs!r}; "
                "pass model_class="
            )
    with _quiet_transformers():
        model = model_class.from_pretrained(path, **from_pretrained_kwargs)
    kwargs = {k: settings[k] for k in ("attention", "lam_neg", "learnable_lambda", "neg_query")}
    # settings written before lambda_mode / neg_init existed: their defaults
    kwargs["lambda_mode"] = settings.get("lambda_mode")
    kwargs["neg_init"] = settings.get("neg_init", "orthogonal")
    model = convert(model, layers=settings.get("layers"), **kwargs)
    wanted = {
        name: t
        for name, t in {**dict(model.named_parameters()), **dict(model.named_buffers())}.items()
        if ".gpam." in name
    }
    seen: set[str] = set()
    for file in _checkpoint_files(path):
        with safe_open(str(file), framework="pt") as f:
            for name in set(f.keys()) & wanted.keys():
                with torch.no_grad():
                    wanted[name].copy_(f.get_tensor(name))
                seen.add(name)
    missing = sorted(wanted.keys() - seen)
    if missing:
        raise ValueError(f"path: checkpoint lacks gpam tensors {missing[:5]} (of {len(missing)})")
    return model


__all__ = [
    "CONVERTIBLE",
    "SUPPORTED_MODEL_TYPES",
    "convert",
    "gpam_parameters",
    "is_converted",
    "lambdas",
    "load_converted",
]
