"""The parameters ``gpam.hf.convert`` adds to one attention layer: lambda and the negative query."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gpam.nn.multihead import LAMBDA_MODES, NEG_INITS, NEG_QUERIES

__all__ = ["LAMBDA_MODES", "NEG_INITS", "NEG_QUERIES", "GpamAttentionState"]


def rotate_half(x: Tensor) -> Tensor:
    """``[x1, x2] -> [-x2, x1]`` over the last dimension (the rotary convention of transformers)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate ``x (B, H, T, D)`` by ``cos, sin (B, T, D)`` (as transformers does)."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return x * cos + rotate_half(x) * sin


def unapply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Inverse of :func:`apply_rope` (also when cos/sin carry an attention scaling factor)."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return (x * cos - rotate_half(x) * sin) / (cos * cos + sin * sin)


class GpamAttentionState(nn.Module):
    """Per-layer gpam settings and daGPAM parameters, attached to a transformers attention layer.

    ``lam_neg`` is one value per head: a learnable parameter (kept >= 0 by a straight-through
    clamp, so an exact 0 start still receives gradient) or a fixed buffer, always float32 (also
    in bf16/fp16 models and after ``.to(dtype)``); the maps below are built in float32 and cast
    to the model's dtype. The negative query
    (``neg_query``): ``"linear"``: ``Q_neg[h] = Q_pos[h] @ W[h]``, ``W (H, D, D)`` initialised to
    random orthogonal matrices (as ``gpam.MultiheadAttention``); ``"full"``: its own projection
    ``(E -> H*D)`` of the layer input, initialised to the pretrained query projection followed by
    the same kind of orthogonal map; ``"negate"``: ``Q_neg = -Q_pos`` (no parameters);
    ``"relu_linear"``: ``ReLU(Q_pos[h]) @ W[h]``. ``neg_init="neg_identity"`` starts W at -I
    (``"full"``: minus the pretrained query projection). ``lambda_mode="token"``: ``lam_neg`` per
    token, ``max(x A^T + c, 0)`` (same clamp) from the layer input x, A = 0 and c = ``lam_neg``
    at start (float32, like the per-head lambda), so a converted model starts exact. With rotary
    positions the map acts on the query before rotation; ``Q_neg`` is then rotated as ``Q_pos``.
    """

    def __init__(
        self,
        *,
        attention: str,
        num_heads: int,
        head_dim: int,
        lam_neg: float = 0.0,
        learnable_lambda: bool = True,
        neg_query: str = "linear",
        query_proj: tuple[Tensor, Tensor | None] | None = None,
        lambda_mode: str | None = None,
        neg_init: str = "orthogonal",
    ) -> None:
        super().__init__()
        self.attention, self.num_heads, self.head_dim = attention, num_heads, head_dim
        if lambda_mode is None:
            lambda_mode = "head" if learnable_lambda else "fixed"
        self.neg_query, self.neg_init, self.lambda_mode = neg_query, neg_init, lambda_mode
        self.learnable_lambda = lambda_mode == "head"
        if attention != "dagpam":
            return
        ref = query_proj[0] if query_proj is not None else torch.empty(0)
        dtype = ref.dtype if ref.numel() else torch.get_default_dtype()
        # New parameters are initialised in float32 (orthogonal_'s QR has no half kernels) and
        # then cast to the model's dtype; lam_neg stays float32 (a bf16 lambda would round
        # gradient steps away), it is cast to the activations' dtype where it is used.
        init = {"device": ref.device, "dtype": torch.float32}
        lam = torch.full((num_heads,), float(lam_neg), **init)
        if lambda_mode == "head":
            self.lam_neg_param = nn.Parameter(lam)
        elif lambda_mode == "token":
            if query_proj is None:
                raise ValueError("query_proj is required for lambda_mode='token'")
            self.lambda_proj = nn.Linear(ref.shape[1], num_heads, **init)
            with torch.no_grad():
                self.lambda_proj.weight.zero_()
                self.lambda_proj.bias.copy_(lam)
        else:
            self.register_buffer("lam_neg_value", lam)
        if neg_query == "negate":
            return
        rot = torch.empty(num_heads, head_dim, head_dim, **init)
        if neg_init == "neg_identity":
            rot.copy_(-torch.eye(head_dim, **init).expand_as(rot))
        else:
            for h in range(num_heads):
                nn.init.orthogonal_(rot[h])
        if neg_query in ("linear", "relu_linear"):
            self.neg_weight = nn.Parameter(rot.to(dtype))
            return
        if query_proj is None:
            raise ValueError("query_proj is required for neg_query='full'")
        w, b = query_proj  # (H*D, E), (H*D,)
        hd, e = w.shape
        proj = nn.Linear(e, hd, bias=b is not None, device=ref.device, dtype=dtype)
        with torch.no_grad():
            w_heads = w.detach().float().view(num_heads, head_dim, e)
            proj.weight.copy_(torch.einsum("hde,hdf->hfe", w_heads, rot).reshape(hd, e))
            if b is not None:
                b_heads = b.detach().float().view(num_heads, head_dim)
                proj.bias.copy_(torch.einsum("hd,hdf->hf", b_heads, rot).flatten())
        self.q_neg_proj = proj

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        """``nn.Module._apply``; ``lam_neg`` stays float32 under ``.to(dtype)`` / ``.half()``."""
        super()._apply(fn, recurse)
        proj = getattr(self, "lambda_proj", None)
        extra = [] if proj is None else [proj.weight, proj.bias]
        for t in [getattr(self, n, None) for n in ("lam_neg_param", "lam_neg_value")] + extra:
            if t is not None and t.is_floating_point() and t.dtype != torch.float32:
                t.data = t.data.float()
        return self

    def lam_neg(self, hidden: Tensor | None = None) -> Tensor:
        """``lam_neg`` >= 0 in the forward pass: per head (H,), or per token (B, H, T, 1) from
        the layer input ``hidden`` (B, T, E) with ``lambda_mode="token"``."""
        if self.lambda_mode == "token":
            if hidden is None:
                raise RuntimeError("gpam: lambda_mode='token' did not receive the layer input")
            raw = self.lambda_proj(hidden.float()).transpose(1, 2).unsqueeze(-1)
            return raw + (raw.clamp_min(0.0) - raw).detach()
        if self.learnable_lambda:
            raw = self.lam_neg_param
            return raw + (raw.clamp_min(0.0) - raw).detach()
        return self.lam_neg_value

    def negative_query(
        self, q: Tensor, hidden: Tensor | None = None, rope: tuple[Tensor, Tensor] | None = None
    ) -> Tensor:
        """``Q_neg (B, H, T, D)`` from the (rotated, when ``rope``) positive query ``q``.

        ``hidden (B, T, E)`` is the layer input (needed by ``"full"``); ``rope = (cos, sin)``,
        each ``(B, T, D)``, the rotary embedding already applied to ``q``.
        """
        if self.neg_query == "negate":
            return -q
        if self.neg_query == "full":
            if hidden is None:
                raise RuntimeError("gpam: neg_query='full' did not receive the layer input")
            b, t, _ = hidden.shape
            q_neg = self.q_neg_proj(hidden).view(b, t, self.num_heads, self.head_dim)
            q_neg = q_neg.transpose(1, 2)
            return apply_rope(q_neg, *rope) if rope is not None else q_neg
        base = unapply_rope(q, *rope) if rope is not None else q
        if self.neg_query == "relu_linear":
            base = torch.relu(base)
        q_neg = torch.einsum("bhld,hde->bhle", base, self.neg_weight)
        return apply_rope(q_neg, *rope) if rope is not None else q_neg

    def extra_repr(self) -> str:
        s = f"attention={self.attention!r}, num_heads={self.num_heads}, head_dim={self.head_dim}"
        if self.attention == "dagpam":
            s += f", neg_query={self.neg_query!r}, neg_init={self.neg_init!r}"
            s += f", lambda_mode={self.lambda_mode!r}"
        return s
