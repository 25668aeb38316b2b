"""Turn a loaded transformers model into a gpam model; load it back."""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gpam.functional.registry import HF_CONVERTIBLE, variant_info
from gpam.hf._compat import require_transformers
from gpam.hf.attention import ATTN_IMPLEMENTATION, attach_hooks, register
from gpam.hf.families import SUPPORTED_MODEL_TYPES, attention_layers, family_of
from gpam.hf.params import build_state
from gpam.nn.dagpam import check_dagpam_settings
from gpam.nn.variant import VariantParams, split_attn_kwargs

#: variants ``convert`` can route a pretrained layer through (``hf_convertible`` in
#: ``gpam.functional.registry``, whose ``hf_note`` says why the others are refused).
CONVERTIBLE: tuple[str, ...] = HF_CONVERTIBLE
CONFIG_KEY = "gpam"


def _check_args(
    attention: object,
    lam_neg: object,
    learnable_lambda: object,
    neg_query: object,
    lambda_mode: object = None,
    neg_init: object = "orthogonal",
    attn_kwargs: object = None,
) -> str:
    """Validate convert's arguments; return the resolved lambda_mode (``lambda_mode``, when
    given, overrides ``learnable_lambda``)."""
    if not isinstance(attention, str) or attention not in CONVERTIBLE:
        try:
            note = variant_info(attention).hf_note  # type: ignore[arg-type]
        except ValueError:
            note = ""
        why = f"attention={attention!r} {note}; " if note else ""
        raise ValueError(
            f"{why}attention must be one of {', '.join(CONVERTIBLE)}; got {attention!r}"
        )
    if not isinstance(learnable_lambda, bool):
        raise TypeError(f"learnable_lambda must be a bool, got {type(learnable_lambda).__name__}")
    mode = check_dagpam_settings(
        lam_neg=lam_neg, lambda_mode=lambda_mode,  # type: ignore[arg-type]
        learnable_lambda=learnable_lambda and lambda_mode is None,
        neg_query=neg_query, neg_init=neg_init,  # type: ignore[arg-type]
    )  # fmt: skip
    split_attn_kwargs(attention, attn_kwargs)  # type: ignore[arg-type]
    return mode


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
    return any(isinstance(m, VariantParams) for m in model.modules())


def convert(
    model: nn.Module,
    attention: str = "dagpam",
    lam_neg: float = 0.0,
    learnable_lambda: bool = True,
    neg_query: str = "linear",
    layers: Iterable[int] | None = None,
    lambda_mode: str | None = None,
    neg_init: str = "orthogonal",
    attn_kwargs: dict[str, Any] | None = None,
) -> nn.Module:
    """Route the attention of a loaded transformers model through gpam, in place; returns it.

    Each chosen self-attention layer (``layers``: indices in model order, None = all) gets the
    variant's parameter module (a ``gpam.nn.variant.VariantParams``, as in
    ``gpam.MultiheadAttention``) as a child named ``gpam``; for daGPAM it holds the per-head
    ``lam_neg`` (learnable, kept >= 0, or fixed) and the negative-query map (``neg_query``:
    ``"linear"``, ``"full"``, ``"negate"`` or ``"relu_linear"``; ``neg_init="neg_identity"``
    starts the map at -I instead of random orthogonal). ``lambda_mode`` overrides
    ``learnable_lambda`` when given: ``"fixed"``, ``"head"`` (= ``learnable_lambda=True``) or
    ``"token"`` (a per-token ``lam_neg(x) = max(x A^T + c, 0)`` of the layer input, A = 0 and
    c = ``lam_neg`` at start: exact at start with ``lam_neg=0``). The model's attention
    implementation becomes
    ``"gpam"`` (registered with ``transformers.AttentionInterface`` and ``AttentionMaskInterface``).
    With ``attention="dagpam", lam_neg=0`` the outputs equal the original model's.
    ``attention`` may be any variant with ``hf_convertible`` in ``gpam.functional.registry``
    (:data:`CONVERTIBLE`): ``"softmax"`` computes the same function through gpam; variants
    without a starting point equal to softmax change the outputs (fine-tune afterwards), and
    those whose registry entry carries an ``hf_note`` say why with a warning. Variants that are
    not convertible are refused with their ``hf_note`` (``diff``: the projection shapes change;
    ``diff2``: it cannot start equal; see docs/huggingface.md). ``attn_kwargs``: the variant's
    options and op keyword arguments, as for ``gpam.MultiheadAttention``.
    The settings are stored in ``model.config.gpam`` so :func:`load_converted` can rebuild it.
    Supported model types: see :data:`gpam.hf.SUPPORTED_MODEL_TYPES`.
    """
    transformers = require_transformers()
    if not isinstance(model, transformers.PreTrainedModel):
        raise TypeError(f"model must be a transformers PreTrainedModel, got {type(model).__name__}")
    lambda_mode = _check_args(
        attention, lam_neg, learnable_lambda, neg_query, lambda_mode, neg_init, attn_kwargs
    )
    note = variant_info(attention).hf_note
    if note:
        warnings.warn(f"attention={attention!r}: {note}", UserWarning, stacklevel=2)
    if is_converted(model):
        raise ValueError("model is already converted by gpam.hf.convert")
    fam = family_of(model)
    found = attention_layers(model, fam)
    chosen = _choose(found, layers)
    for i in chosen:
        _, module = found[i]
        state = build_state(
            attention,
            num_heads=fam.num_heads(module),
            head_dim=fam.head_dim(module),
            query_proj=fam.query_proj(module),
            lam_neg=float(lam_neg),
            lambda_mode=lambda_mode,
            neg_query=neg_query,
            neg_init=neg_init,
            layer_idx=int(getattr(module, "layer_idx", i) or 0),
            attn_kwargs=attn_kwargs,
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
            "attn_kwargs": dict(attn_kwargs or {}),
            "layers": chosen if layers is not None else None,
            "family": fam.name,
        },
    )
    return model


def gpam_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters :func:`convert` added (negative queries and learnable lambdas)."""
    return [p for m in model.modules() if isinstance(m, VariantParams) for p in m.parameters()]


def lambdas(model: nn.Module) -> dict[str, list[float]]:
    """Current per-head ``lam_neg`` of every converted daGPAM layer, by module name.

    For ``lambda_mode="token"`` layers: the value for a zero input, ``max(c, 0)`` per head.
    """

    def per_head(m: VariantParams) -> list[float]:
        lam = m.lambda_proj.bias.clamp_min(0.0) if m.lambda_mode == "token" else m.lambdas()[1]
        return lam.detach().float().cpu().tolist()

    return {
        name.removesuffix(".gpam"): per_head(m)
        for name, m in model.named_modules()
        if isinstance(m, VariantParams) and m.attention == "dagpam"
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
    kwargs["attn_kwargs"] = settings.get("attn_kwargs")
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
