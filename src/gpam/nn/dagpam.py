"""daGPAM's parameters: the negative query and the lambdas (fixed, per head, or per token).

``DagpamParams`` is used by ``gpam.MultiheadAttention`` and by the Hugging Face adapter
(``gpam.hf.convert``) alike; :func:`check_dagpam_settings` is the one validation of daGPAM's
settings (layer, model configs and conversion) and :func:`resolve_lambda_mode` the one reading of
the ``learnable_lambda`` alias.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gpam._names import LAMBDA_MODES, LAMBDA_PARAMS, NEG_INITS, NEG_QUERIES
from gpam.functional.lambdas import check_lambda, clamp_nonnegative
from gpam.functional.registry import Op
from gpam.nn.fused_query import compose_query
from gpam.nn.seeded_init import Rule, kept, linear_default, orthogonal_heads
from gpam.nn.variant import LayerSpec, Query, QueryProj, VariantParams, heads

__all__ = ["LAMBDA_MODES", "LAMBDA_PARAMS", "NEG_INITS", "NEG_QUERIES", "DagpamParams"]


def resolve_lambda_mode(lambda_mode: str | None, learnable_lambda: bool) -> str:
    """``lambda_mode``, with ``learnable_lambda=True`` read as ``"head"`` (None means "fixed").

    ``learnable_lambda=True`` turns ``"fixed"`` (or None) into ``"head"`` and conflicts with
    ``"token"``. The one place this alias is resolved (layer, model configs, HF conversion).
    """
    if not isinstance(learnable_lambda, bool):
        raise TypeError(f"learnable_lambda must be a bool, got {learnable_lambda!r}")
    lambda_mode = "fixed" if lambda_mode is None else lambda_mode
    if lambda_mode not in LAMBDA_MODES:
        raise ValueError(
            f"lambda_mode must be one of {', '.join(map(repr, LAMBDA_MODES))}; got {lambda_mode!r}"
        )
    if learnable_lambda and lambda_mode == "fixed":
        return "head"
    if learnable_lambda and lambda_mode != "head":
        raise ValueError(
            f"learnable_lambda=True is an alias of lambda_mode='head'; it conflicts with "
            f"lambda_mode={lambda_mode!r}"
        )
    return lambda_mode


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")


def check_dagpam_settings(
    *,
    lam_neg: float,
    lam_pos: float | None = None,
    affine: bool = True,
    lambda_mode: str | None = "fixed",
    learnable_lambda: bool = False,
    lambda_param: str = "clamp",
    neg_query: str = "linear",
    neg_init: str = "orthogonal",
) -> str:
    """Validate daGPAM's settings (errors name the argument); return the resolved lambda_mode.

    ``lam_neg >= 0``; with ``affine=True`` ``lam_pos`` must be None (it is ``1 + lam_neg``),
    with ``affine=False`` a number >= 0; ``lambda_param="sigmoid"`` keeps learnable lambdas in
    (0, 1), so their starting values must lie there.
    """
    check_lambda("lam_neg", lam_neg)
    check_lambda("lam_pos", lam_pos, allow_none=True)
    if not isinstance(affine, bool):
        raise TypeError(f"affine must be a bool, got {affine!r}")
    if affine and lam_pos is not None:
        raise ValueError("lam_pos is fixed to 1 + lam_neg when affine=True; pass affine=False")
    if not affine and lam_pos is None:
        raise ValueError(
            "lam_pos must be given when affine=False (rows then sum to lam_pos - lam_neg)"
        )
    _check_choice("lambda_param", lambda_param, LAMBDA_PARAMS)
    _check_choice("neg_query", neg_query, NEG_QUERIES)
    _check_choice("neg_init", neg_init, NEG_INITS)
    mode = resolve_lambda_mode(lambda_mode, learnable_lambda)
    if lambda_param == "sigmoid" and mode != "fixed":
        pairs = (("lam_neg", lam_neg), ("lam_pos", lam_pos if mode == "head" else None))
        for name, lam in pairs:
            if lam is not None and not 0.0 < lam < 1.0:
                raise ValueError(
                    f"lambda_param='sigmoid' keeps learnable lambdas in (0, 1): {name} must lie "
                    f"in (0, 1), got {lam!r}"
                )
    return mode


class DagpamParams(VariantParams):
    """daGPAM's negative query ``Q_neg`` and its lambdas.

    Settings (``gpam.MultiheadAttention``'s arguments of the same names):

    * ``lam_neg``, ``lam_pos``, ``affine``: see ``gpam.functional.dagpam_attention``; with
      ``affine=False`` rows sum to ``lam_pos - lam_neg``.
    * ``lambda_mode``: ``"fixed"`` (default; the hyperparameter ``lam_neg``), ``"head"`` (a
      learnable per-head parameter kept >= 0) or ``"token"`` (``lam_neg(x)`` per head and query
      token from a bias-carrying E -> H linear map of the query-side input, weight 0 and bias
      ``lam_neg`` at start, so it starts exactly at ``lam_neg``, 0 included; affine:
      ``lam_pos = 1 + lam_neg(x)`` per token; ``affine=False`` keeps ``lam_pos`` fixed).
      Learnable lambdas are created in float32 or the layer's dtype if wider (float64), and
      never cast below float32 (``.half()``/``.to(torch.bfloat16)`` leave them float32;
      ``.double()`` upcasts); the token map is applied to the input cast to its dtype.
      ``learnable_lambda=True`` is an alias of ``"head"`` (:func:`resolve_lambda_mode`).
    * ``lambda_param``: how learnable lambdas stay >= 0: ``"clamp"`` (default; the raw value is
      lambda itself, used as ``max(lambda, 0)`` with a straight-through gradient, so it can
      start at exactly 0), ``"softplus"`` (a 0 start becomes 1e-6) or ``"sigmoid"`` (lambda in
      (0, 1), so ``lam_neg`` must lie in (0, 1): with ``lambda_mode="token"``,
      ``affine=False`` and ``lam_pos=1`` this is Diff V2's lambda).
    * ``neg_query``: ``"linear"`` (default; a per-head head_dim x head_dim map W of the
      positive query, E * head_dim extra parameters), ``"full"`` (its own E x E projection of
      the input), ``"negate"`` (``-Q_pos``) or ``"relu_linear"`` (``ReLU(Q_pos) W``; from an
      unverified secondary description of the paper, whose theory assumes W close to -I). The
      paper's exact choice is not public: the default is our documented assumption.
    * ``neg_init``: ``"orthogonal"`` (default: random orthogonal W per head; ``"full"`` gets an
      independently initialised projection) or ``"neg_identity"`` (W = -I; ``"full"`` starts as
      minus the query projection, so ``Q_neg = -Q_pos``; ``"relu_linear"``:
      ``Q_neg = -ReLU(Q_pos)``).

    State (names are the layer's state-dict keys): ``neg_weight`` (H, D, D) for
    ``neg_query="linear"``/``"relu_linear"``, ``q_neg_proj`` (E -> H*D) for ``"full"``;
    ``lam_neg_param`` (and ``lam_pos_param`` with ``affine=False``) (H,) for
    ``lambda_mode="head"``; ``lambda_proj`` (E -> H, with bias) for ``"token"``; with
    ``pretrained=True`` a fixed lambda is kept as the buffer ``lam_neg_value`` (H,) so that a
    converted checkpoint records it. Learnable lambdas live in float32 at least (see ``_apply``).

    ``pretrained=True`` (the Hugging Face conversion): ``"full"`` starts as the pretrained query
    projection followed by the same per-head orthogonal (or -I) map ``"linear"`` starts with.
    """

    OWNED_KWARGS = ("q_neg", "lam_pos", "lam_neg", "affine")

    def _build(self, spec: LayerSpec, query_proj: QueryProj, pretrained: bool) -> None:
        h, d, e = spec.num_heads, spec.head_dim, spec.embed_dim
        self.neg_query, self.neg_init = spec.neg_query, spec.neg_init
        self.affine, self.lambda_mode, self.lambda_param = (
            spec.affine, spec.lambda_mode, spec.lambda_param,
        )  # fmt: skip
        self.learnable_lambda = spec.lambda_mode == "head"
        self._pretrained = pretrained
        self._lam_neg_value, self._lam_pos_value = float(spec.lam_neg), spec.lam_pos
        dtype = spec.dtype or torch.get_default_dtype()
        if spec.neg_query in ("linear", "relu_linear") or (pretrained and spec.neg_query == "full"):
            rot = self._rotation(h, d, spec.device)
            if spec.neg_query != "full":
                self.neg_weight = nn.Parameter(rot.to(dtype))
            else:
                self.q_neg_proj = self._pretrained_full(rot, query_proj, spec)
        elif spec.neg_query == "full":
            self.q_neg_proj = nn.Linear(e, e, bias=spec.bias, **spec.factory)
            if query_proj is not None:
                self.sync_to_query(*query_proj)
        # lambdas: float32 at least, never below the layer's dtype (a bf16 lambda would round
        # small updates away; a float64 layer keeps float64 lambdas)
        lam_factory = {"device": spec.device, "dtype": torch.promote_types(torch.float32, dtype)}
        if spec.lambda_mode == "head":
            lam = torch.full((h,), float(spec.lam_neg), **lam_factory)
            self.lam_neg_param = nn.Parameter(self._to_raw(lam))
            if not spec.affine:
                lam = torch.full((h,), float(spec.lam_pos), **lam_factory)  # type: ignore[arg-type]
                self.lam_pos_param = nn.Parameter(self._to_raw(lam))
        elif spec.lambda_mode == "token":
            self.lambda_proj = nn.Linear(e, h, bias=True, **lam_factory)
            with torch.no_grad():
                self.lambda_proj.weight.zero_()
                self.lambda_proj.bias.copy_(self._to_raw(torch.full((h,), float(spec.lam_neg))))
        elif pretrained:
            self.register_buffer(
                "lam_neg_value", torch.full((h,), float(spec.lam_neg), **lam_factory)
            )

    def init_rules(self) -> dict[str, Rule]:
        """``neg_weight``: a random orthogonal map per head (``-I`` is kept); ``q_neg_proj``:
        ``nn.Linear``'s default (kept where it derives from the query projection: with
        ``neg_init="neg_identity"`` the layer re-syncs it, see ``sync_to_query``); lambdas
        start at fixed values and are kept."""
        rules: dict[str, Rule] = {}
        derived = self.neg_init == "neg_identity" or self._pretrained
        if "neg_weight" in self._parameters:
            rules["neg_weight"] = None if self.neg_init == "neg_identity" else orthogonal_heads()
        proj = getattr(self, "q_neg_proj", None)
        if proj is not None:
            rules |= kept(proj, "q_neg_proj.") if derived else linear_default(proj, "q_neg_proj.")
        for name in ("lam_neg_param", "lam_pos_param"):
            if name in self._parameters:
                rules[name] = None
        if getattr(self, "lambda_proj", None) is not None:
            rules |= kept(self.lambda_proj, "lambda_proj.")  # weight 0, bias lam_neg
        return rules

    # ------------------------------------------------------------------------------ set-up
    def _rotation(self, h: int, d: int, device: Any) -> Tensor:
        """(H, D, D) float32 (QR has no half kernels): -I, or random orthogonal per head."""
        w = torch.empty(h, d, d, device=device)
        if self.neg_init == "neg_identity":
            w.copy_(-torch.eye(d, device=device).expand(h, d, d))
        elif w.device.type != "meta":
            for i in range(h):
                nn.init.orthogonal_(w[i])
        return w

    def _pretrained_full(
        self, rot: Tensor, query_proj: tuple[Tensor, Tensor | None] | None, spec: LayerSpec
    ) -> nn.Linear:
        if query_proj is None:
            raise ValueError("query_proj is required for neg_query='full' with pretrained=True")
        w, b = query_proj  # (H*D, E), (H*D,)
        hd, e = w.shape
        proj = nn.Linear(e, hd, bias=b is not None, device=w.device, dtype=w.dtype)
        with torch.no_grad():
            w_heads = w.detach().float().view(spec.num_heads, spec.head_dim, e)
            proj.weight.copy_(torch.einsum("hde,hdf->hfe", w_heads, rot).reshape(hd, e))
            if b is not None:
                b_heads = b.detach().float().view(spec.num_heads, spec.head_dim)
                proj.bias.copy_(torch.einsum("hd,hdf->hf", b_heads, rot).flatten())
        return proj

    def sync_to_query(self, weight: Tensor, bias: Tensor | None) -> None:
        """With ``neg_query="full", neg_init="neg_identity"``: set the negative projection to
        minus the query projection (``Q_neg = -Q_pos``); call after replacing the latter."""
        if self.neg_query != "full" or self.neg_init != "neg_identity":
            return
        with torch.no_grad():
            self.q_neg_proj.weight.copy_(-weight)
            if self.q_neg_proj.bias is not None and bias is not None:
                self.q_neg_proj.bias.copy_(-bias)

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
        return clamp_nonnegative(raw)  # max(raw, 0) with identity gradient

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        """``nn.Module._apply``; lambdas never drop below float32 (``.half()``,
        ``.to(torch.bfloat16)``), so small updates to them are not rounded away."""
        super()._apply(fn, recurse)
        proj = getattr(self, "lambda_proj", None)
        extra = [] if proj is None else list(proj.parameters())
        names = ("lam_neg_param", "lam_pos_param", "lam_neg_value")
        for t in [getattr(self, n, None) for n in names] + extra:
            if t is not None and t.dtype in (torch.float16, torch.bfloat16):
                t.data = t.data.float()
        return self

    # ------------------------------------------------------------------------------ maths
    @property
    def uses_input(self) -> bool:
        return self.neg_query == "full" or self.lambda_mode == "token"

    @property
    def uses_positions(self) -> bool:
        return self.neg_query != "negate"

    def lambdas(self, x: Tensor | None = None) -> tuple[float | Tensor, float | Tensor]:
        """Current ``(lam_pos, lam_neg)``.

        Floats (``lambda_mode="fixed"``; a (H,) tensor when converted), per-head tensors (H,)
        (``"head"``), or per-token tensors (B, H, L, 1) (``"token"``, which needs ``x``: the
        query-side layer input (B, L, E), batch first).
        """
        return self._lambdas(x, True)  # type: ignore[return-value]

    def _lambdas(
        self, x: Tensor | None, need_pos: bool
    ) -> tuple[float | Tensor | None, float | Tensor]:
        """:meth:`lambdas`; with ``affine=True`` and ``need_pos=False`` lam_pos is None (the
        affine mix does not read it: one op less per layer for tensor lambdas)."""
        lam_pos: float | Tensor | None = self._lam_pos_value
        if self.lambda_mode == "head":
            lam_neg: float | Tensor = self._from_raw(self.lam_neg_param)
            lam_pos = self._from_raw(self.lam_pos_param) if not self.affine else None
        elif self.lambda_mode == "token":
            e = self.spec.embed_dim
            if not isinstance(x, Tensor) or x.dim() != 3 or x.shape[-1] != e:
                raise ValueError(
                    "lambdas(x): lambda_mode='token' needs x, the query-side input of shape "
                    f"(batch, length, {e})"
                )
            raw = self.lambda_proj(x.to(self.lambda_proj.weight.dtype))  # (B, L, H)
            lam_neg = self._from_raw(raw).transpose(1, 2).unsqueeze(-1)  # (B, H, L, 1)
        else:
            lam_neg = getattr(self, "lam_neg_value", self._lam_neg_value)
        if self.affine:
            lam_pos = 1.0 + lam_neg if need_pos else None  # type: ignore[operator]
        return lam_pos, lam_neg

    @property
    def fuses_query(self) -> bool:
        return self.neg_query == "linear"

    def fused_query(
        self, weight: Tensor, bias: Tensor | None
    ) -> tuple[Tensor, Tensor | None] | None:
        """``neg_query="linear"``: one projection giving ``Q_pos`` and ``Q_neg`` (before
        positions) from the query projection ``weight (H*D, E)``, ``bias (H*D,)``.

        Per head h its rows are ``[W_h; N_h^T W_h]`` (2D x E; N: ``neg_weight``) and its bias
        ``[b_h, b_h N_h]`` (:func:`gpam.nn.fused_query.compose_query`) per forward, so the values
        are ``Q_pos`` and ``Q_pos N`` to round-off and gradients reach the same parameters. The
        output's heads are (positive, negative) pairs: 2H heads ordered ``2h, 2h + 1``. Else None.
        """
        if self.neg_query != "linear":
            return None
        return compose_query(weight, bias, self.neg_weight.to(weight.dtype))

    def negative_query(self, x: Tensor | None, q: Tensor | None) -> Tensor:
        """``Q_neg`` (B, H, L, D) before positions, from the query-side input ``x`` (B, L, E)
        (``"full"``) or the positive query ``q`` (B, H, L, D) before positions (the others)."""
        if self.neg_query == "full":
            return heads(self.q_neg_proj(x), self.spec.num_heads)
        if self.neg_query == "negate":
            return -q  # type: ignore[operator]
        base = torch.relu(q) if self.neg_query == "relu_linear" else q
        return torch.matmul(base, self.neg_weight)  # (B, H, L, D) @ (H, D, D), per head

    def attend(self, op: Op, query: Query, k: Tensor, v: Tensor, **common: Any) -> Any:
        q = query.q
        lam_pos, lam_neg = self._lambdas(query.x, need_pos=False)
        kw = {"lam_pos": lam_pos, "lam_neg": lam_neg, "affine": self.affine}
        if query.paired:  # both queries from one GEMM (fused_query): pairs of heads
            return op(q, k, v, q_neg=None, **kw, **common)
        if self.neg_query == "negate":
            q_neg = -q  # negation commutes with positions
        elif self.neg_query == "full":
            q_neg = query.rotate(self.negative_query(query.x, None))
        else:
            q_neg = query.rotate(self.negative_query(None, query.raw()))
        return op(q, k, v, q_neg=q_neg, **kw, **common)

    def extra_repr(self) -> str:
        s = f"neg_query={self.neg_query!r}, neg_init={self.neg_init!r}, affine={self.affine}"
        s += f", lambda_mode={self.lambda_mode!r}"
        if self.lambda_mode == "fixed":
            s += f", lam_neg={self._lam_neg_value}"
        return s
