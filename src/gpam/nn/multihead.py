"""``gpam.MultiheadAttention``: a drop-in multi-head attention layer for every gpam variant.

The layer keeps what every variant shares (projections, masks, KV cache, rotary positions,
dropout); the variant's own parameters and maths live in its parameter module (``self.variant``,
a ``gpam.nn.variant.VariantParams`` named by the registry ``gpam.functional.registry``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gpam.functional._masks import PreparedMask
from gpam.functional.registry import variant
from gpam.nn.dagpam import (  # noqa: F401 - re-exported: the settings' names
    LAMBDA_MODES,
    LAMBDA_PARAMS,
    NEG_INITS,
    NEG_QUERIES,
    check_dagpam_settings,
    resolve_lambda_mode,
)
from gpam.nn.diff import diff_lambda_init  # noqa: F401 - re-exported
from gpam.nn.from_torch import copy_torch_weights
from gpam.nn.kv_cache import KVCache
from gpam.nn.masks import layer_mask
from gpam.nn.rotary import apply_rotary
from gpam.nn.seeded_init import Rule, linear_default
from gpam.nn.variant import (
    LayerSpec,
    Query,
    VariantParams,
    flatten_variant_keys,
    heads,
    nest_variant_keys,
    split_attn_kwargs,
)

MASK_CONVENTIONS = ("sdpa", "torch")


class AttentionOutput(NamedTuple):
    """What ``MultiheadAttention.forward`` returns when extras are asked for.

    ``output`` (B, L, E) (or (L, B, E) with ``batch_first=False``); ``weights`` (B, H, L, S) when
    ``need_weights=True``, else None; ``cache`` the ``kv_cache`` passed in (grown), else None.
    """

    output: Tensor
    weights: Tensor | None
    cache: KVCache | None


class MultiheadAttention(nn.Module):
    """Multi-head attention with a choice of attention variant (default daGPAM).

    Args:
        embed_dim: model width E. num_heads: heads H (E must be divisible by H). For
            ``attention="diff"`` this is the softmax baseline's head count: the layer uses H/2
            differential heads of two sub-heads each (Ye et al.'s equal-parameter setup).
        attention: one of ``gpam.VARIANTS``; its parameters and their maths live in its
            parameter module ``self.variant`` (``gpam.nn.dagpam.DagpamParams``,
            ``gpam.nn.diff.DiffParams``, ``gpam.nn.diff2.Diff2Params``, ...; see their
            docstrings). ``"diff2"``'s query projection is E -> 2E (2H query heads), so it is
            not equal-parameter with softmax at the same width (see the README's variant notes).
        lam_neg, lam_pos, affine, lambda_mode, learnable_lambda, lambda_param, neg_query,
            neg_init: daGPAM's settings (``lambda_mode`` "fixed", "head" or "token";
            ``learnable_lambda=True`` is an alias of "head"; ``neg_query`` "linear", "full",
            "negate" or "relu_linear"); documented in ``gpam.nn.dagpam.DagpamParams`` and
            validated by ``gpam.nn.dagpam.check_dagpam_settings``.
        kv_heads: key/value heads for grouped-query attention (divides H; default H).
        bias, dropout, kdim, vdim, batch_first: as in ``torch.nn.MultiheadAttention``.
        layer_idx: depth of this layer (sets diff's ``lam_init``).
        attn_kwargs: options of the variant's parameter module (its ``OPTIONS``) and extra
            keyword arguments of its functional op (e.g. coda's ``alpha``, sigmoid's ``bias``,
            ``scale``). Keys the layer sets (``attn_mask``, ``is_causal``, ``dropout_p``,
            ``return_weights``) or the variant computes (daGPAM's ``q_neg``/lambdas, ...) are
            refused with a ValueError. ``self.attn_kwargs`` holds the op's part.
        mask_convention: what a bool ``attn_mask`` means: ``"sdpa"`` (default; True = keep, as
            ``F.scaled_dot_product_attention``) or ``"torch"`` (True = masked, as
            ``torch.nn.MultiheadAttention``; :meth:`from_torch` sets it). Float masks are
            additive either way; ``key_padding_mask`` is always True = padding.

    Masks: ``key_padding_mask`` (B, S) bool with True = padding (ignored), as in
    ``torch.nn.MultiheadAttention``; ``attn_mask`` (L, S) or (B|1, H|1, L, S), bool (see
    ``mask_convention``) or additive float, as in ``F.scaled_dot_product_attention``.

    Attributes of the variant's parameter module read through the layer (``mha.neg_weight``,
    ``mha.lambdas(x)``, ``mha.lambda_proj``, ``mha.subln``, ...); its state-dict keys are the
    layer's own (``neg_weight``, not ``variant.neg_weight``), so checkpoints keep loading.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        *,
        attention: str = "dagpam",
        lam_neg: float = 0.5,
        lam_pos: float | None = None,
        affine: bool = True,
        learnable_lambda: bool = False,
        lambda_mode: str = "fixed",
        lambda_param: str = "clamp",
        neg_query: str = "linear",
        neg_init: str = "orthogonal",
        kv_heads: int | None = None,
        bias: bool = True,
        dropout: float = 0.0,
        kdim: int | None = None,
        vdim: int | None = None,
        batch_first: bool = True,
        layer_idx: int = 0,
        attn_kwargs: dict[str, Any] | None = None,
        mask_convention: str = "sdpa",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        entry = variant(attention, "attention")
        _check_sizes(embed_dim, num_heads, kv_heads)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        if mask_convention not in MASK_CONVENTIONS:
            raise ValueError(
                f"mask_convention must be one of {MASK_CONVENTIONS}, got {mask_convention!r}"
            )
        lambda_mode = check_dagpam_settings(
            lam_neg=lam_neg, lam_pos=lam_pos, affine=affine, lambda_mode=lambda_mode,
            learnable_lambda=learnable_lambda, lambda_param=lambda_param, neg_query=neg_query,
            neg_init=neg_init,
        )  # fmt: skip
        options, self.attn_kwargs = split_attn_kwargs(attention, attn_kwargs)
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.kv_heads = kv_heads or num_heads
        self.head_dim = embed_dim // num_heads
        self.attention, self.mask_convention = attention, mask_convention
        self.dropout, self.batch_first, self.layer_idx = dropout, batch_first, layer_idx
        self.kdim, self.vdim = kdim or embed_dim, vdim or embed_dim
        spec = LayerSpec(
            attention, embed_dim, num_heads, self.head_dim, self.kv_heads, bias, layer_idx,
            device, dtype, lam_neg, lam_pos, affine, lambda_mode, lambda_param, neg_query,
            neg_init, options,
        )  # fmt: skip
        cls = entry.params_class() or VariantParams
        cls.check(spec)
        self._op = entry.op
        factory = {"device": device, "dtype": dtype}
        kv_width = self.kv_heads * self.head_dim
        self.q_heads = cls.QUERY_SETS_IN_PROJ * num_heads
        self.q_proj = nn.Linear(embed_dim, self.q_heads * self.head_dim, bias=bias, **factory)
        self.k_proj = nn.Linear(self.kdim, kv_width, bias=bias, **factory)
        self.v_proj = nn.Linear(self.vdim, kv_width, bias=bias, **factory)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **factory)
        self.variant = cls(spec, (self.q_proj.weight, self.q_proj.bias))
        self.register_state_dict_post_hook(flatten_variant_keys)
        self.register_load_state_dict_pre_hook(nest_variant_keys)

    def __getattr__(self, name: str) -> Any:
        """Module attributes, then those of the variant's parameter module (``mha.neg_weight``)."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            inner = self.__dict__["_modules"].get("variant")
            if inner is None or name.startswith("_"):
                raise
            return getattr(inner, name)

    @classmethod
    def from_torch(cls, module: nn.MultiheadAttention, **kwargs: Any) -> MultiheadAttention:
        """Build a gpam layer with the weights of a ``torch.nn.MultiheadAttention``.

        The new layer reads a bool ``attn_mask`` as torch does (True = masked;
        ``mask_convention="torch"``), so the same masks mean the same thing; pass
        ``mask_convention="sdpa"`` for gpam's True = keep. It returns the output alone (not
        torch's ``(output, weights)``) unless ``need_weights=True`` (see :meth:`forward`).
        """
        ref = module.out_proj.weight
        kwargs.setdefault("dropout", module.dropout)
        kwargs.setdefault("mask_convention", "torch")
        new = cls(
            module.embed_dim, module.num_heads, bias=module.in_proj_bias is not None,
            kdim=module.kdim, vdim=module.vdim, batch_first=module.batch_first,
            device=ref.device, dtype=ref.dtype, **kwargs,
        )  # fmt: skip
        copy_torch_weights(module, new)
        return new

    def sync_neg_identity(self) -> None:
        """With ``neg_query="full", neg_init="neg_identity"``: set daGPAM's negative projection
        to minus the query projection; call after replacing ``q_proj``."""
        sync = getattr(self.variant, "sync_to_query", None)
        if sync is not None:
            sync(self.q_proj.weight, self.q_proj.bias)

    def init_rules(self) -> dict[str, Rule]:
        """The construction-time distribution of every parameter (names as in
        ``named_parameters()``): the projections keep ``nn.Linear``'s default, the variant's
        module lists its own (:meth:`VariantParams.init_rules`); see
        ``gpam.models.paired_init_``."""
        rules: dict[str, Rule] = {}
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            rules |= linear_default(getattr(self, name), name + ".")
        return rules | {"variant." + k: r for k, r in self.variant.init_rules().items()}

    def extra_parameters(self) -> int:
        """Parameters beyond the same layer with softmax attention."""
        return self.variant.extra_numel()

    def extra_repr(self) -> str:
        s = f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, attention={self.attention!r}"
        if self.kv_heads != self.num_heads:
            s += f", kv_heads={self.kv_heads}"
        return s

    # ----------------------------------------------------------------------------- forward
    def forward(
        self,
        query: Tensor,
        key: Tensor | None = None,
        value: Tensor | None = None,
        *,
        key_padding_mask: Tensor | None = None,
        attn_mask: Tensor | PreparedMask | None = None,
        is_causal: bool = False,
        kv_cache: KVCache | None = None,
        rotary: tuple[Tensor, Tensor] | None = None,
        need_weights: bool = False,
    ) -> Tensor | AttentionOutput:
        """Attend from ``query`` (B, L, E) to ``key``/``value`` (B, S, kdim/vdim); None = self.

        One rule: the output tensor (B, L, E), or an :class:`AttentionOutput` ``(output,
        weights, cache)`` whenever an extra is asked for (``need_weights=True`` and/or a
        ``kv_cache``; the fields not asked for are None). A cache grows by the new keys/values
        and causal masking is aligned to its end; weights are (B, H, L, S).

        ``attn_mask`` may also be a ``gpam.functional.PreparedMask`` from
        ``gpam.nn.masks.layer_mask(key_padding_mask, attn_mask, is_causal, past, B, L, S, ...)``
        (True = keep; ``mask_convention`` does not apply): the masks merged, validated and with
        dead rows found once for many layers, as the models do; ``key_padding_mask`` and
        ``is_causal`` must then be left unset.
        """
        if kv_cache is not None and not isinstance(kv_cache, KVCache):
            raise TypeError(f"kv_cache must be a gpam.KVCache, got {type(kv_cache).__name__}")
        query, key, value = self._inputs(query, key, value, kv_cache)
        b, length, _ = query.shape
        fused = self._fused_query()
        if fused is None:
            q = heads(self.q_proj(query), self.q_heads)
        else:  # (B, 2H', L, D): per head the query and the variant's own one, from one GEMM
            both = F.linear(query, *fused).view(b, length, self.q_heads, 2, self.head_dim)
            q = both.permute(0, 2, 3, 1, 4).view(b, 2 * self.q_heads, length, self.head_dim)
        if kv_cache is not None and kv_cache.static and kv_cache.filled:
            k, v, past = kv_cache.k, kv_cache.v, 0
        else:
            k = heads(self.k_proj(key), self.kv_heads)
            v = heads(self.v_proj(value), self.kv_heads)
            if rotary is not None:
                k = apply_rotary(k, *rotary)
            past = 0 if kv_cache is None or kv_cache.static else kv_cache.length
            if kv_cache is not None:
                k, v = kv_cache.update(k, v)
        q_raw = q
        if rotary is not None:
            q = apply_rotary(q, *rotary)  # both queries of a fused GEMM at once
        if isinstance(attn_mask, PreparedMask):
            if key_padding_mask is not None or is_causal:
                raise ValueError(
                    "attn_mask is a PreparedMask: key_padding_mask and is_causal are part of it "
                    "(gpam.nn.masks.layer_mask); pass them there, not here"
                )
            prepared = attn_mask
        else:
            if (
                attn_mask is not None
                and attn_mask.dtype == torch.bool
                and self.mask_convention == "torch"
            ):
                attn_mask = ~attn_mask
            prepared = layer_mask(
                key_padding_mask, attn_mask, is_causal, past, b, length, k.shape[2], q.dtype,
                q.device,
            )  # fmt: skip
        # no mask: None and SDPA's own causal flag (its fastest backends); else the prepared one
        mask, causal = (None, prepared.is_causal) if prepared.mask is None else (prepared, False)
        rotate = (lambda t: apply_rotary(t, *rotary)) if rotary is not None else _identity
        paired = fused is not None
        pairs_shape = (b, self.q_heads, 2, length, self.head_dim)
        raw = (lambda: q_raw.view(pairs_shape)[:, :, 0]) if paired else (lambda: q_raw)
        res = self.variant.attend(
            self._op, Query(query, q, raw, rotate, paired), k, v, attn_mask=mask,
            is_causal=causal, dropout_p=self.dropout if self.training else 0.0,
            return_weights=need_weights, **self.attn_kwargs,
        )  # fmt: skip
        out, weights = res if need_weights else (res, None)
        out = self.out_proj(out.transpose(1, 2).reshape(b, length, self.embed_dim))
        if not self.batch_first:
            out = out.transpose(0, 1)
        if need_weights or kv_cache is not None:
            return AttentionOutput(out, weights, kv_cache)
        return out

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without the kept composed query weight (see :meth:`_fused_query`)."""
        state = self.__dict__.copy()
        state.pop("_fused_kept", None)
        return state

    def _fused_query(self) -> tuple[Tensor, Tensor | None] | None:
        """The variant's one-GEMM query weight (``VariantParams.fused_query``). Without grad it
        is kept and reused while the parameters it comes from are unchanged (the same storage
        and version counter: an optimizer step, ``load_state_dict`` or ``.to()`` makes it anew),
        so that decoding and evaluation do not rebuild it at every call (nor a forward whose
        sources are all frozen); when a gradient must reach them it is built per forward and a
        kept one is dropped."""
        if not self.variant.fuses_query:
            return None
        w, b = self.q_proj.weight, self.q_proj.bias
        if torch.compiler.is_compiling():
            return self.variant.fused_query(w, b)
        sources = [p for p in (w, b, *self.variant.parameters()) if p is not None]
        if torch.is_grad_enabled() and any(p.requires_grad for p in sources):
            self.__dict__["_fused_kept"] = None
            return self.variant.fused_query(w, b)
        key = (torch.is_inference_mode_enabled(),) + tuple(
            (p.data_ptr(), p._version) for p in sources
        )
        kept = self.__dict__.get("_fused_kept")
        if kept is None or kept[0] != key:
            kept = (key, self.variant.fused_query(w, b))
            self.__dict__["_fused_kept"] = kept
        return kept[1]

    def _inputs(
        self, query: Tensor, key: Tensor | None, value: Tensor | None, cache: KVCache | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        if not isinstance(query, Tensor) or query.dim() != 3:
            shape = tuple(query.shape) if isinstance(query, Tensor) else type(query).__name__
            raise ValueError(f"query must be 3-D (batch, length, embed_dim), got {shape}")
        if query.shape[-1] != self.embed_dim:
            raise ValueError(
                f"query's last dim must be embed_dim={self.embed_dim}, got {query.shape[-1]}"
            )
        key = query if key is None else key
        value = key if value is None else value
        if not self.batch_first:
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        if cache is not None and cache.static and cache.filled:
            return query, key, value
        for name, t, width in (("key", key, self.kdim), ("value", value, self.vdim)):
            if not isinstance(t, Tensor) or t.dim() != 3:
                raise ValueError(f"{name} must be 3-D (batch, length, {name[0]}dim)")
            if t.shape[-1] != width:
                raise ValueError(f"{name}'s last dim must be {width}, got {t.shape[-1]}")
            if t.shape[0] != query.shape[0]:
                raise ValueError(
                    f"{name} batch size {t.shape[0]} != query batch size {query.shape[0]}"
                )
        if key.shape[1] != value.shape[1]:
            raise ValueError(f"key length {key.shape[1]} != value length {value.shape[1]}")
        return query, key, value


def _identity(t: Tensor) -> Tensor:
    return t


def _check_sizes(embed_dim: int, num_heads: int, kv_heads: int | None) -> None:
    for name, val in (("embed_dim", embed_dim), ("num_heads", num_heads)):
        if isinstance(val, bool) or not isinstance(val, int) or val < 1:
            raise ValueError(f"{name} must be a positive integer, got {val!r}")
    if embed_dim % num_heads:
        raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
    kvh = num_heads if kv_heads is None else kv_heads
    if isinstance(kvh, bool) or not isinstance(kvh, int) or kvh < 1 or num_heads % kvh:
        raise ValueError(
            f"kv_heads must be a positive divisor of num_heads ({num_heads}), got {kv_heads!r}"
        )
