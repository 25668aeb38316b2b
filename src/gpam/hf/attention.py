"""The attention function and mask builder that gpam registers with transformers.

Registered under :data:`ATTN_IMPLEMENTATION` in ``transformers.AttentionInterface`` and
``transformers.masking_utils.AttentionMaskInterface``. The mask builder is transformers' own
``sdpa_mask`` (boolean, True = keep, or ``None`` when SDPA's ``is_causal`` can be used instead);
without a registered mask builder transformers would pass no mask at all and causal masking would
be silently dropped. Layers that carry no gpam state (not chosen in ``convert(layers=...)``, or
cross-attention) fall back to transformers' SDPA function with the same mask, so they compute
exactly what the unconverted model computed.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from gpam.functional.registry import variant
from gpam.hf._compat import require_transformers
from gpam.hf.params import apply_rope, unapply_rope
from gpam.nn.variant import Query, VariantParams

ATTN_IMPLEMENTATION = "gpam"
_CTX = "_gpam_ctx"
_RAW = "_gpam_raw_query"


def gpam_attention_forward(
    module: nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[Tensor, Tensor | None]:
    """transformers attention-function contract, computed by ``gpam.functional``.

    query (B, H, Tq, D), key/value (B, H_kv, Tkv, D) (grouped-query heads are not copied: the
    gpam core uses SDPA's ``enable_gqa`` or a grouped view); ``attention_mask`` bool
    (B|1, 1, Tq, Tkv) or None. Returns ``(out (B, Tq, H, D), weights (B, H, Tq, Tkv) or None)``.
    """
    state = getattr(module, "gpam", None)
    if not isinstance(state, VariantParams):
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(
            module,
            query,
            key,
            value,
            attention_mask,
            dropout=dropout,
            scaling=scaling,
            is_causal=is_causal,
            **kwargs,
        )
    if kwargs.get("position_bias") is not None or kwargs.get("softcap") is not None:
        raise ValueError("gpam attention does not support position_bias or softcap")
    q_len = query.shape[2]
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    # Same rule as transformers' SDPA path: with no mask, causal only when several new queries.
    causal = bool(q_len > 1 and attention_mask is None and causal)
    if causal and key.shape[2] > q_len:  # prefill of an empty static cache (top-left causal)
        key, value = key[:, :, :q_len], value[:, :, :q_len]
    ctx = getattr(module, _CTX, None) or {}
    want_weights = _weights_requested(kwargs)
    rope = ctx.get("rope")
    q_in = Query(
        ctx.get("hidden"), query, lambda: _raw_query(module, query, rope),
        (lambda t: apply_rope(t, *rope)) if rope is not None else (lambda t: t),
    )  # fmt: skip
    res = state.attend(
        variant(state.attention).op, q_in, key, value, attn_mask=attention_mask,
        is_causal=causal, dropout_p=float(dropout), scale=scaling, return_weights=want_weights,
        **getattr(state, "op_kwargs", {}),
    )  # fmt: skip
    out, weights = res if want_weights else (res, None)
    return out.transpose(1, 2).contiguous(), weights


def _raw_query(module: nn.Module, query: Tensor, rope: tuple[Tensor, Tensor] | None) -> Tensor:
    """The query (B, H, Tq, D) before rotary positions: the query projection's output kept by
    :func:`_keep_query` (no un-rotation), else (a layer without ``q_proj``) rotary undone."""
    if rope is None:
        return query
    kept = getattr(getattr(module, "q_proj", None), _RAW, None)
    if isinstance(kept, Tensor) and kept.shape[:2] == (query.shape[0], query.shape[2]):
        b, t, d = query.shape[0], query.shape[2], query.shape[3]
        return kept.view(b, t, -1, d).transpose(1, 2)
    return unapply_rope(query, *rope)


def _keep_query(proj: nn.Module, args: tuple, output: Tensor) -> None:
    """Forward hook on a rotary layer's ``q_proj``: keep its output (B, T, H*D), the query
    before positions, for variants that make new queries from it (daGPAM's ``Q_neg``)."""
    _set(proj, _RAW, output)


def _set(module: nn.Module, name: str, value: Any) -> None:
    """A plain instance attribute, without ``nn.Module.__setattr__``'s registry checks (the
    hooks run at every layer call; the values are never parameters, buffers or modules)."""
    module.__dict__[name] = value


def _weights_requested(kwargs: dict[str, Any]) -> bool:
    """True when the caller asked for attention weights (``output_attentions=True``).

    transformers 5 records them with hooks instead of passing a flag, so also look at its
    active output collector (internal; absent in other versions, then only the flag counts).
    """
    if kwargs.get("output_attentions", False):
        return True
    try:
        from transformers.utils.output_capturing import _active_collector
    except ImportError:  # pragma: no cover - other transformers versions
        return False
    try:
        collected = _active_collector.get()
    except LookupError:  # no model forward has set it
        return False
    return isinstance(collected, dict) and "attentions" in collected


def _stash_inputs(module: nn.Module, args: tuple, kwargs: dict) -> None:
    """Forward pre-hook: keep the layer input / rotary (cos, sin) for the variant's module."""
    state = module.gpam
    ctx: dict[str, Any] = {}
    if state.uses_input:
        ctx["hidden"] = args[0] if args else kwargs.get("hidden_states")
    if getattr(module, "_gpam_rotary", False) and state.uses_positions:
        rope = kwargs.get("position_embeddings")
        if rope is None and len(args) > 1 and isinstance(args[1], tuple):
            rope = args[1]
        if rope is None:
            raise RuntimeError("gpam: rotary layer called without position_embeddings")
        ctx["rope"] = rope
    _set(module, _CTX, ctx)


def _clear_inputs(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
    """Forward hook: drop the references kept by :func:`_stash_inputs` and :func:`_keep_query`."""
    _set(module, _CTX, None)
    proj = getattr(module, "q_proj", None)
    if proj is not None and getattr(proj, _RAW, None) is not None:
        _set(proj, _RAW, None)


def attach_hooks(module: nn.Module, rotary: bool) -> None:
    """Register the pre/post hooks a layer needs (when the variant's module reads the layer's
    input, or makes queries that need the rotary positions)."""
    module._gpam_rotary = rotary
    state = module.gpam
    if state.uses_input or (rotary and state.uses_positions):
        module.register_forward_pre_hook(_stash_inputs, with_kwargs=True)
        module.register_forward_hook(_clear_inputs, with_kwargs=True)
    proj = getattr(module, "q_proj", None)
    if rotary and state.uses_positions and isinstance(proj, nn.Module):
        proj.register_forward_hook(_keep_query)


def register() -> str:
    """Register gpam's attention function and mask builder with transformers (idempotent)."""
    transformers = require_transformers()
    try:
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
    except ImportError as err:
        raise ImportError(
            f"gpam.hf needs transformers >= 5.0 (tested with 5.23); found "
            f"{transformers.__version__}: upgrade with `pip install -U gpam[hf]`"
        ) from err
    if not hasattr(transformers.PreTrainedModel, "set_attn_implementation"):
        raise ImportError(
            f"gpam.hf needs transformers >= 5.0 (tested with 5.23); found "
            f"{transformers.__version__}: upgrade with `pip install -U gpam[hf]`"
        )

    transformers.AttentionInterface.register(ATTN_IMPLEMENTATION, gpam_attention_forward)
    AttentionMaskInterface.register(ATTN_IMPLEMENTATION, sdpa_mask)
    return ATTN_IMPLEMENTATION


__all__ = ["ATTN_IMPLEMENTATION", "attach_hooks", "gpam_attention_forward", "register"]
