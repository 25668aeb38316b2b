"""``gpam.MultiheadAttention``: a drop-in multi-head attention layer for every gpam variant."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gpam._names import LAMBDA_MODES, LAMBDA_PARAMS, NEG_INITS, NEG_QUERIES
from gpam.functional import (
    SINGLE_QUERY,
    check_variant,
    dagpam_attention,
    diff2_attention,
    diff_attention,
)
from gpam.nn.kv_cache import KVCache
from gpam.nn.masks import merge_masks
from gpam.nn.rotary import apply_rotary


def diff_lambda_init(layer_idx: int) -> float:
    """Ye et al.'s depth schedule ``0.8 - 0.6 exp(-0.3 * layer_idx)`` (0-based layer index)."""
    return 0.8 - 0.6 * math.exp(-0.3 * layer_idx)


class MultiheadAttention(nn.Module):
    """Multi-head attention with a choice of attention variant (default daGPAM).

    Args:
        embed_dim: model width E. num_heads: heads H (E must be divisible by H). For
            ``attention="diff"`` this is the softmax baseline's head count: the layer uses H/2
            differential heads of two sub-heads each (Ye et al.'s equal-parameter setup).
        attention: one of ``gpam.VARIANTS``. ``"diff2"`` (Differential Transformer V2): the query
            projection is E -> 2E (2H heads of head_dim; heads 2i, 2i+1 are the positive and
            negative query of head i), keys/values unchanged (``kv_heads`` for GQA), output
            E -> E, plus ``lambda_proj`` E -> H without bias: ``lam = sigmoid(lambda_proj(x))``
            per token and head (x = the query-side input); no per-head norm. Parameters: softmax
            attention's plus E*E (+ E bias) + E*H. Against softmax and ``diff`` (which keep
            softmax's projection sizes) it is therefore not equal-parameter at the same width:
            match it by widening the others (e.g. ``compare --match-params``) or by giving diff2
            layers fewer heads/width; see the README's variant notes.
        lam_neg, lam_pos, affine: daGPAM weights (see ``gpam.functional.dagpam_attention``);
            with ``affine=False`` rows sum to ``lam_pos - lam_neg``.
        lambda_mode: daGPAM's lambda: ``"fixed"`` (default; the hyperparameter ``lam_neg``),
            ``"head"`` (a learnable per-head parameter kept >= 0) or ``"token"`` (``lam_neg(x)``
            per head and query token from a bias-carrying E -> H linear map of the query-side
            input, weight 0 and bias ``lam_neg`` at start, so it starts exactly at ``lam_neg``,
            0 included; kept >= 0 as below; affine: ``lam_pos = 1 + lam_neg(x)`` per token;
            ``affine=False`` keeps ``lam_pos`` fixed). Learnable lambdas (per-head parameters
            and the token map) are created in float32 on ``device`` whatever ``dtype`` is, and
            never cast below float32 (``.half()``/``.to(torch.bfloat16)`` leave them float32;
            ``.double()`` upcasts); the token map is applied to the input cast to its dtype.
        learnable_lambda: ``True`` is an alias of ``lambda_mode="head"`` (with the default
            ``lambda_mode="fixed"``; together with ``"token"`` it is an error).
        lambda_param: how learnable lambdas stay >= 0: ``"clamp"`` (default; the raw value is
            lambda itself, used as ``max(lambda, 0)`` with a straight-through gradient, so it can
            start at exactly 0), ``"softplus"`` (lambda = softplus(raw); a 0 start becomes
            1e-6) or ``"sigmoid"``
            (lambda = sigmoid(raw), in (0, 1), so ``lam_neg`` must lie in (0, 1): with
            ``lambda_mode="token"``, ``affine=False`` and ``lam_pos=1`` this is Diff V2's lambda).
        neg_query: how daGPAM's negative query is made: ``"linear"`` (default; a per-head
            head_dim x head_dim map W of the positive query, E * head_dim extra parameters),
            ``"full"`` (its own E x E projection of the input), ``"negate"`` (``-Q_pos``) or
            ``"relu_linear"`` (``ReLU(Q_pos) W``, per-head W; from an unverified secondary
            description of the paper, whose theory assumes W close to -I). The paper's exact
            choice is not public: the default is our documented assumption.
        neg_init: ``"orthogonal"`` (default: random orthogonal W per head; ``"full"`` gets an
            independently initialised projection) or ``"neg_identity"`` (W = -I, and for
            ``"full"`` the negative projection starts as minus the query projection, so
            ``Q_neg = -Q_pos`` at start; for ``"relu_linear"`` ``Q_neg = -ReLU(Q_pos)``).
        kv_heads: key/value heads for grouped-query attention (divides H; default H).
        bias, dropout, kdim, vdim, batch_first: as in ``torch.nn.MultiheadAttention``.
        layer_idx: depth of this layer (sets diff's ``lam_init``).
        attn_kwargs: extra keyword arguments of the variant (e.g. coda's ``alpha``, sigmoid's
            ``bias``).

    Masks: ``key_padding_mask`` (B, S) bool with True = padding (ignored), as in
    ``torch.nn.MultiheadAttention``; ``attn_mask`` (L, S) or (B|1, H|1, L, S), bool with
    True = keep or additive float, as in ``F.scaled_dot_product_attention``.
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
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_variant(attention, "attention")
        _check_sizes(embed_dim, num_heads, kv_heads, attention)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        if neg_query not in NEG_QUERIES:
            raise ValueError(f"neg_query must be one of {NEG_QUERIES}, got {neg_query!r}")
        if lambda_param not in LAMBDA_PARAMS:
            raise ValueError(f"lambda_param must be one of {LAMBDA_PARAMS}, got {lambda_param!r}")
        if neg_init not in NEG_INITS:
            raise ValueError(f"neg_init must be one of {NEG_INITS}, got {neg_init!r}")
        lambda_mode = resolve_lambda_mode(lambda_mode, learnable_lambda)
        if attention == "dagpam":
            _check_lambdas(lam_neg, lam_pos, affine)
            if lambda_param == "sigmoid" and lambda_mode != "fixed":
                _check_sigmoid_lambdas(lam_neg, lam_pos if lambda_mode == "head" else None)
        factory = {"device": device, "dtype": dtype}
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.kv_heads = kv_heads or num_heads
        self.head_dim = embed_dim // num_heads
        self.attention, self.neg_query, self.neg_init = attention, neg_query, neg_init
        self.affine, self.lambda_mode, self.lambda_param = affine, lambda_mode, lambda_param
        self.learnable_lambda = lambda_mode == "head"
        self.dropout, self.batch_first, self.layer_idx = dropout, batch_first, layer_idx
        self.attn_kwargs = dict(attn_kwargs or {})
        self.kdim, self.vdim = kdim or embed_dim, vdim or embed_dim
        kv_width = self.kv_heads * self.head_dim
        q_width = 2 * embed_dim if attention == "diff2" else embed_dim
        self.q_proj = nn.Linear(embed_dim, q_width, bias=bias, **factory)
        self.k_proj = nn.Linear(self.kdim, kv_width, bias=bias, **factory)
        self.v_proj = nn.Linear(self.vdim, kv_width, bias=bias, **factory)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **factory)
        if attention == "dagpam":
            self._init_dagpam(lam_neg, lam_pos, bias, factory)
        elif attention == "diff":
            self._init_diff(factory)
        elif attention == "diff2":
            self.lambda_proj = nn.Linear(embed_dim, num_heads, bias=False, **factory)

    # ----------------------------------------------------------------------------- set-up
    def _init_dagpam(
        self, lam_neg: float, lam_pos: float | None, bias: bool, factory: dict
    ) -> None:
        h, d = self.num_heads, self.head_dim
        if self.neg_query in ("linear", "relu_linear"):
            w = torch.empty(h, d, d, device=factory["device"])  # float32: QR has no bf16 kernel
            if self.neg_init == "neg_identity":
                w.copy_(-torch.eye(d, device=factory["device"]).expand(h, d, d))
            elif w.device.type != "meta":
                for i in range(h):
                    nn.init.orthogonal_(w[i])
            self.neg_weight = nn.Parameter(w.to(factory["dtype"] or torch.get_default_dtype()))
        elif self.neg_query == "full":
            self.q_neg_proj = nn.Linear(self.embed_dim, self.embed_dim, bias=bias, **factory)
            self.sync_neg_identity()
        self._lam_neg_value, self._lam_pos_value = float(lam_neg), lam_pos
        lam_factory = {"device": factory["device"], "dtype": torch.float32}
        if self.lambda_mode == "head":
            lam = torch.full((h,), float(lam_neg), **lam_factory)
            self.lam_neg_param = nn.Parameter(self._to_raw(lam))
            if not self.affine:
                lam = torch.full((h,), float(lam_pos), **lam_factory)  # type: ignore[arg-type]
                self.lam_pos_param = nn.Parameter(self._to_raw(lam))
        elif self.lambda_mode == "token":
            self.lambda_proj = nn.Linear(self.embed_dim, h, bias=True, **lam_factory)
            with torch.no_grad():
                self.lambda_proj.weight.zero_()
                self.lambda_proj.bias.copy_(self._to_raw(torch.full((h,), float(lam_neg))))

    def sync_neg_identity(self) -> None:
        """With ``neg_query="full", neg_init="neg_identity"``: set the negative projection to
        minus the query projection (``Q_neg = -Q_pos``); call after replacing ``q_proj``."""
        if self.neg_query != "full" or self.neg_init != "neg_identity":
            return
        with torch.no_grad():
            self.q_neg_proj.weight.copy_(-self.q_proj.weight)
            if self.q_neg_proj.bias is not None:
                self.q_neg_proj.bias.copy_(-self.q_proj.bias)

    def _init_diff(self, factory: dict) -> None:
        d = self.head_dim
        self.lam_init = diff_lambda_init(self.layer_idx)
        for name in ("lambda_q1", "lambda_k1", "lambda_q2", "lambda_k2"):
            setattr(self, name, nn.Parameter(torch.randn(d, **factory) * 0.1))
        self.subln = nn.RMSNorm(2 * d, eps=1e-5, **factory)

    def _to_raw(self, lam: Tensor) -> Tensor:
        if self.lambda_param == "softplus":
            # inverse softplus; exact 0 is unreachable with softplus, so start just above it
            lam = lam.clamp_min(1e-6)
            return lam + torch.log(-torch.expm1(-lam))
        if self.lambda_param == "sigmoid":
            return torch.logit(lam)
        return lam

    def _from_raw(self, raw: Tensor) -> Tensor:
        if self.lambda_param == "softplus":
            return F.softplus(raw)
        if self.lambda_param == "sigmoid":
            return torch.sigmoid(raw)
        return raw + (raw.clamp_min(0.0) - raw).detach()  # max(raw, 0) with identity gradient

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        """``nn.Module._apply``; learnable daGPAM lambdas never drop below float32 (``.half()``,
        ``.to(torch.bfloat16)``), so small updates to them are not rounded away."""
        super()._apply(fn, recurse)
        if self.attention == "dagpam":
            proj = getattr(self, "lambda_proj", None)
            extra = [] if proj is None else list(proj.parameters())
            for t in [getattr(self, n, None) for n in ("lam_neg_param", "lam_pos_param")] + extra:
                if t is not None and t.dtype in (torch.float16, torch.bfloat16):
                    t.data = t.data.float()
        return self

    @classmethod
    def from_torch(cls, module: nn.MultiheadAttention, **kwargs: Any) -> MultiheadAttention:
        """Build a gpam layer with the weights of a ``torch.nn.MultiheadAttention``."""
        e, h = module.embed_dim, module.num_heads
        if kwargs.get("attention") == "diff2":
            raise ValueError(
                "from_torch cannot build attention='diff2': its query projection is E -> 2E "
                "(2H query heads), which a torch.nn.MultiheadAttention does not have"
            )
        bias = module.in_proj_bias is not None
        kwargs.setdefault("dropout", module.dropout)
        ref = module.out_proj.weight
        new = cls(
            e, h, bias=bias, kdim=module.kdim, vdim=module.vdim, batch_first=module.batch_first,
            device=ref.device, dtype=ref.dtype, **kwargs,
        )  # fmt: skip
        with torch.no_grad():
            if module._qkv_same_embed_dim:
                wq, wk, wv = module.in_proj_weight.chunk(3)
            else:
                wq, wk, wv = module.q_proj_weight, module.k_proj_weight, module.v_proj_weight
            new.q_proj.weight.copy_(wq)
            new.k_proj.weight.copy_(wk)
            new.v_proj.weight.copy_(wv)
            new.out_proj.weight.copy_(module.out_proj.weight)
            if bias:
                bq, bk, bv = module.in_proj_bias.chunk(3)
                new.q_proj.bias.copy_(bq)
                new.k_proj.bias.copy_(bk)
                new.v_proj.bias.copy_(bv)
                new.out_proj.bias.copy_(module.out_proj.bias)
        if new.attention == "dagpam":
            new.sync_neg_identity()
        return new

    # ----------------------------------------------------------------------------- lambdas
    def lambdas(self, x: Tensor | None = None) -> tuple[float | Tensor, float | Tensor]:
        """Current ``(lam_pos, lam_neg)`` of a daGPAM layer.

        Floats (``lambda_mode="fixed"``), per-head tensors (H,) (``"head"``), or per-token
        tensors (B, H, L, 1) (``"token"``, which needs ``x``: the query-side layer input
        (B, L, E), batch first).
        """
        if self.attention != "dagpam":
            raise ValueError(
                f"lambdas() is for attention='dagpam', this layer is {self.attention!r}"
            )
        lam_pos: float | Tensor | None = self._lam_pos_value
        if self.lambda_mode == "head":
            lam_neg: float | Tensor = self._from_raw(self.lam_neg_param)
            lam_pos = self._from_raw(self.lam_pos_param) if not self.affine else None
        elif self.lambda_mode == "token":
            if not isinstance(x, Tensor) or x.dim() != 3 or x.shape[-1] != self.embed_dim:
                raise ValueError(
                    "lambdas(x): lambda_mode='token' needs x, the query-side input of shape "
                    f"(batch, length, {self.embed_dim})"
                )
            raw = self.lambda_proj(x.to(self.lambda_proj.weight.dtype))  # (B, L, H)
            lam_neg = self._from_raw(raw).transpose(1, 2).unsqueeze(-1)  # (B, H, L, 1)
        else:
            lam_neg = self._lam_neg_value
        return (1.0 + lam_neg if self.affine else lam_pos), lam_neg  # type: ignore[return-value,operator]

    def diff2_lambda(self, x: Tensor) -> Tensor:
        """Diff V2's per-token lambda ``sigmoid(lambda_proj(x))``: x (B, L, E) -> (B, H, L, 1)."""
        return torch.sigmoid(self.lambda_proj(x)).transpose(1, 2).unsqueeze(-1)

    def diff_lambda(self) -> Tensor:
        """Ye et al.'s reparameterised lambda of a diff layer (a scalar tensor)."""
        lam1 = torch.exp(torch.sum(self.lambda_q1 * self.lambda_k1).float())
        lam2 = torch.exp(torch.sum(self.lambda_q2 * self.lambda_k2).float())
        return (lam1 - lam2 + self.lam_init).to(self.lambda_q1.dtype)

    def extra_parameters(self) -> int:
        """Parameters beyond the same layer with softmax attention."""
        names = ("neg_weight", "q_neg_proj", "lam_neg_param", "lam_pos_param", "lambda_proj")
        names += ("lambda_q1", "lambda_k1", "lambda_q2", "lambda_k2", "subln")
        total = 0
        if self.attention == "diff2":  # the second half of the query projection
            total += self.embed_dim * self.embed_dim
            total += self.embed_dim if self.q_proj.bias is not None else 0
        for name in names:
            obj = getattr(self, name, None)
            if isinstance(obj, nn.Parameter):
                total += obj.numel()
            elif isinstance(obj, nn.Module):
                total += sum(p.numel() for p in obj.parameters())
        return total

    def extra_repr(self) -> str:
        s = f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, attention={self.attention!r}"
        if self.kv_heads != self.num_heads:
            s += f", kv_heads={self.kv_heads}"
        if self.attention == "dagpam":
            s += f", neg_query={self.neg_query!r}, neg_init={self.neg_init!r}"
            s += f", affine={self.affine}, lambda_mode={self.lambda_mode!r}"
            if self.lambda_mode != "head":
                s += f", lam_neg={self._lam_neg_value}"
        return s

    # ----------------------------------------------------------------------------- forward
    def forward(
        self,
        query: Tensor,
        key: Tensor | None = None,
        value: Tensor | None = None,
        *,
        key_padding_mask: Tensor | None = None,
        attn_mask: Tensor | None = None,
        is_causal: bool = False,
        kv_cache: KVCache | None = None,
        rotary: tuple[Tensor, Tensor] | None = None,
        need_weights: bool = False,
    ) -> Tensor | tuple[Tensor, Any]:
        """Attend from ``query`` (B, L, E) to ``key``/``value`` (B, S, kdim/vdim); None = self.

        Returns the output (B, L, E); ``(output, kv_cache)`` when a cache is given (it grows by
        the new keys/values and causal masking is aligned to its end); ``(output, weights)``
        with weights (B, H, L, S) when ``need_weights=True``.
        """
        if need_weights and kv_cache is not None:
            raise ValueError("need_weights=True cannot be combined with kv_cache")
        if kv_cache is not None and not isinstance(kv_cache, KVCache):
            raise TypeError(f"kv_cache must be a gpam.KVCache, got {type(kv_cache).__name__}")
        query, key, value = self._inputs(query, key, value, kv_cache)
        b, length, _ = query.shape
        q_heads = 2 * self.num_heads if self.attention == "diff2" else self.num_heads
        q = self.q_proj(query).view(b, length, q_heads, self.head_dim).transpose(1, 2)
        q_neg = self.negative_query(query, q) if self.attention == "dagpam" else None
        if kv_cache is not None and kv_cache.static and kv_cache.filled:
            k, v = kv_cache.k, kv_cache.v
            past = 0
        else:
            s = key.shape[1]
            k = self.k_proj(key).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
            v = self.v_proj(value).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
            if rotary is not None:
                k = apply_rotary(k, *rotary)
            past = 0 if kv_cache is None or kv_cache.static else kv_cache.length
            if kv_cache is not None:
                k, v = kv_cache.update(k, v)
        if rotary is not None:
            q = apply_rotary(q, *rotary)
            q_neg = apply_rotary(q_neg, *rotary) if q_neg is not None else None
        mask, causal = merge_masks(
            key_padding_mask, attn_mask, is_causal, past, b, length, k.shape[2], q.dtype, q.device
        )
        out = self._attend(query, q, q_neg, k, v, mask, causal, need_weights)
        weights = None
        if need_weights:
            out, weights = out
        out = self.out_proj(out.transpose(1, 2).reshape(b, length, self.embed_dim))
        if not self.batch_first:
            out = out.transpose(0, 1)
        if kv_cache is not None:
            return out, kv_cache
        return (out, weights) if need_weights else out

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
        if key is None:
            key = query
        if value is None:
            value = key
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

    def negative_query(self, query: Tensor, q: Tensor) -> Tensor:
        """daGPAM's ``Q_neg`` (B, H, L, D) from the input ``query`` (B, L, E) and the positive
        query ``q`` (B, H, L, D) before rotary positions (rotary is then applied to both)."""
        if self.neg_query == "linear":
            return torch.einsum("bhld,hde->bhle", q, self.neg_weight)
        if self.neg_query == "relu_linear":
            return torch.einsum("bhld,hde->bhle", torch.relu(q), self.neg_weight)
        if self.neg_query == "full":
            b, length, _ = query.shape
            q_neg = self.q_neg_proj(query).view(b, length, self.num_heads, self.head_dim)
            return q_neg.transpose(1, 2)
        return -q

    def _attend(
        self,
        query: Tensor,
        q: Tensor,
        q_neg: Tensor | None,
        k: Tensor,
        v: Tensor,
        mask: Tensor | None,
        causal: bool,
        need_weights: bool,
    ) -> Tensor | tuple[Tensor, Tensor]:
        common: dict[str, Any] = {
            "attn_mask": mask,
            "is_causal": causal,
            "dropout_p": self.dropout if self.training else 0.0,
            "return_weights": need_weights,
            **self.attn_kwargs,
        }
        if self.attention == "dagpam":
            lam_pos, lam_neg = self.lambdas(query)
            lam_pos = None if self.affine else lam_pos
            return dagpam_attention(
                q, q_neg, k, v, lam_pos=lam_pos, lam_neg=lam_neg, affine=self.affine, **common
            )
        if self.attention == "diff":
            return self._diff(q, k, v, mask, common)
        if self.attention == "diff2":
            return diff2_attention(q, k, v, lam=self.diff2_lambda(query), **common)
        return SINGLE_QUERY[self.attention](q, k, v, **common)

    def _diff(
        self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, common: dict
    ) -> Tensor | tuple[Tensor, Tensor]:
        b, _, s, d = v.shape
        # value heads: kv_heads sub-heads of width d become kv_heads/2 heads of width 2d
        v2 = v.view(b, self.kv_heads // 2, 2, s, d).permute(0, 1, 3, 2, 4).reshape(b, -1, s, 2 * d)
        if mask is not None and mask.dim() == 4 and mask.shape[1] not in (1, q.shape[1] // 2):
            mask = mask[:, 0::2]  # a per-sub-head mask: use the first sub-head's
        common = {**common, "attn_mask": mask}
        res = diff_attention(
            q[:, 0::2], q[:, 1::2], k[:, 0::2], k[:, 1::2], v2, lam=self.diff_lambda(), **common
        )
        out, w = res if isinstance(res, tuple) else (res, None)
        out = self.subln(out) * (1.0 - self.lam_init)  # (B, H/2, L, 2d)
        # back to H sub-heads of width d so that the caller's reshape to E holds
        out = out.view(b, -1, out.shape[2], 2, d).permute(0, 1, 3, 2, 4)
        out = out.reshape(b, -1, out.shape[3], d)
        return (out, w) if w is not None else out


def _check_sizes(embed_dim: int, num_heads: int, kv_heads: int | None, attention: str) -> None:
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
    if attention == "diff" and (num_heads % 2 or kvh % 2):
        raise ValueError(
            "attention='diff' pairs sub-heads: num_heads and kv_heads must be even, got "
            f"{num_heads} and {kvh}"
        )


def resolve_lambda_mode(lambda_mode: str | None, learnable_lambda: bool) -> str:
    """``lambda_mode``, with ``learnable_lambda=True`` read as ``"head"`` (None means "fixed").

    The same rule as the model configs: ``learnable_lambda=True`` turns the default ``"fixed"``
    into ``"head"`` and conflicts with ``"token"``.
    """
    if not isinstance(learnable_lambda, bool):
        raise TypeError(f"learnable_lambda must be a bool, got {learnable_lambda!r}")
    lambda_mode = "fixed" if lambda_mode is None else lambda_mode
    if lambda_mode not in LAMBDA_MODES:
        raise ValueError(f"lambda_mode must be one of {LAMBDA_MODES}, got {lambda_mode!r}")
    if learnable_lambda and lambda_mode == "fixed":
        return "head"
    if learnable_lambda and lambda_mode != "head":
        raise ValueError(
            f"learnable_lambda=True is an alias of lambda_mode='head'; it conflicts with "
            f"lambda_mode={lambda_mode!r}"
        )
    return lambda_mode


def _check_sigmoid_lambdas(lam_neg: float, lam_pos: float | None) -> None:
    for name, lam in (("lam_neg", lam_neg), ("lam_pos", lam_pos)):
        if lam is not None and not 0.0 < lam < 1.0:
            raise ValueError(
                f"lambda_param='sigmoid' keeps learnable lambdas in (0, 1): {name} must lie in "
                f"(0, 1), got {lam!r}"
            )


def _check_lambdas(lam_neg: float, lam_pos: float | None, affine: bool) -> None:
    if isinstance(lam_neg, bool) or not isinstance(lam_neg, (int, float)) or not lam_neg >= 0:
        raise ValueError(f"lam_neg must be a number >= 0, got {lam_neg!r}")
    if affine and lam_pos is not None:
        raise ValueError("lam_pos is fixed to 1 + lam_neg when affine=True; pass affine=False")
    if not affine and (
        lam_pos is None or isinstance(lam_pos, bool) or not isinstance(lam_pos, (int, float))
        or not lam_pos >= 0
    ):  # fmt: skip
        raise ValueError(f"lam_pos must be a number >= 0 when affine=False, got {lam_pos!r}")
