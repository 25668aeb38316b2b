"""Analytic training FLOPs of the models a comparison trains, per attention variant, attention
core included (the formula is in docs/compare.md, "Training FLOPs").

Convention:

* A matrix product of an (m, k) by a (k, n) matrix costs ``2 m k n`` FLOPs (one multiply and one
  add per multiply-accumulate); so does every linear layer, per token ``2 * in * out``.
* Counted: every projection (query, key, value, output, daGPAM's negative query, lambda and gate
  projections), the MLP, the output head (``2 d_model V`` per token), the attention core's score
  products ``Q K^T`` and value products ``W V`` per map as the variant computes them, coda's L1
  distance (3 FLOPs per query, key and dimension: subtract, abs, add), and the elementwise
  combinations a variant adds on the attention output (daGPAM's ``lam_pos o_pos - lam_neg o_neg``:
  3 per output element; diff's and diff2's ``o1 - lam o2``: 2; the gate product: 1; centered's
  mean of the allowed values and its subtraction: 1 per key element + 2 per output element).
* Not counted (the same for every setting, or O(L d) without a ``d`` factor): embedding lookups
  (no arithmetic), position adds and rotary, biases, norms (diff's sub-layer RMSNorm too),
  activations, dropout, residual adds, and the pointwise maps of the scores (softmax, sigmoid,
  tanh, sign, exp), which cost O(L S) per map, not O(L S d).
* The algorithm's count, not one implementation's: gpam's diff path runs one SDPA call per
  D-wide half of its 2D-wide values and so computes each map's scores twice; counted once.
* No causal halving: causal attention counts every query-key pair (L x S), as the explicit
  cores (cog, coda, sigmoid) compute them and as ``gpam bench`` counts SDPA;
  ``causal_half=True`` counts only the visible pairs instead.
* Training = forward x 3 (the backward pass costs twice the forward: gradients with respect to
  the inputs and to the weights), per batch actually drawn (padding included).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

#: the terms of :func:`attention_flops`, in the order reports list them
TERMS = ("projections", "variant_projections", "scores", "values", "distance", "combine")
#: training FLOPs = this x forward FLOPs (backward = 2 x forward)
TRAIN_FACTOR = 3


def _pairs(n_q: int, n_k: int, causal_half: bool) -> int:
    """Query-key pairs a core computes: all ``n_q * n_k``, or with ``causal_half`` only those
    a top-left aligned causal mask keeps (query i sees keys 0 .. i)."""
    if not causal_half:
        return n_q * n_k
    m = min(n_q, n_k)
    return m * (m + 1) // 2 + (n_q - m) * n_k


def attention_flops(
    variant: str,
    *,
    n_q: int,
    n_k: int,
    d_model: int,
    n_heads: int,
    kv_heads: int | None = None,
    lambda_mode: str = "fixed",
    neg_query: str = "linear",
    gate_mode: str = "elementwise",
    causal_half: bool = False,
) -> dict[str, int]:
    """Forward FLOPs of one attention layer on one sequence (``n_q`` queries, ``n_k`` keys),
    split into :data:`TERMS` (see the module docstring for what each counts).

    ``n_heads`` is the layer's H (for diff the softmax baseline's H: H/2 differential heads of
    two sub-heads of width D = d_model / H, values of width 2D); daGPAM's ``lambda_mode`` and
    ``neg_query`` and gated's ``gate_mode`` change its projections.
    """
    for name, v in (("n_q", n_q), ("n_k", n_k), ("d_model", d_model), ("n_heads", n_heads)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an int >= 1, got {v!r}")
    if d_model % n_heads:
        raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
    e, h = d_model, n_heads
    d, hkv = e // h, kv_heads or n_heads
    p = _pairs(n_q, n_k, causal_half)
    core = 2 * h * p * d  # one map's Q K^T (or one W V of width D) over H heads
    q_sets = 2 if variant == "diff2" else 1
    out = dict.fromkeys(TERMS, 0)
    out["projections"] = 2 * n_q * e * q_sets * e + 2 * 2 * n_k * e * hkv * d + 2 * n_q * e * e
    if variant in ("softmax", "cog", "sigmoid", "gated", "centered", "coda"):
        out["scores"], out["values"] = core, core
    elif variant == "dagpam":
        out["scores"], out["values"] = 2 * core, 2 * core
        per_head = 2 * n_q * h * d * d  # Q_pos W per head (linear, relu_linear)
        neg = {"linear": per_head, "relu_linear": per_head, "full": 2 * n_q * e * e, "negate": 0}
        out["variant_projections"] = neg[neg_query]
        if lambda_mode == "token":
            out["variant_projections"] += 2 * n_q * e * h
        out["combine"] = 3 * n_q * e
    elif variant == "diff":
        # H/2 heads x 2 maps x width D = H maps' worth of scores; two W V of width 2D each
        out["scores"], out["values"] = core, 2 * core
        out["combine"] = 2 * n_q * e
    elif variant == "diff2":
        out["scores"], out["values"] = 2 * core, 2 * core  # 2H query heads, one call
        out["variant_projections"] = 2 * n_q * e * h  # lambda_proj (the doubled q is above)
        out["combine"] = 2 * n_q * e
    else:
        raise ValueError(f"attention_flops: no FLOP formula for variant {variant!r}")
    if variant == "coda":
        out["distance"] = 3 * h * p * d
    if variant == "gated":
        out["variant_projections"] = 2 * n_q * e * (h * d if gate_mode == "elementwise" else h)
        out["combine"] = n_q * e
    if variant == "centered":
        out["combine"] = n_k * e + 2 * n_q * e
    return out


def _layer_kw(cfg: dict[str, Any], variant: str) -> dict[str, Any]:
    """The :func:`attention_flops` settings of a model config dict for a layer of ``variant``."""
    gate = (cfg.get("attn_kwargs") or {}).get(variant, {}).get("gate_mode", "elementwise")
    return {
        "d_model": cfg["d_model"],
        "n_heads": cfg["n_heads"],
        "kv_heads": cfg.get("kv_heads"),
        "lambda_mode": "head" if cfg.get("learnable_lambda") and cfg.get("lambda_mode") == "fixed"
        else cfg.get("lambda_mode", "fixed"),
        "neg_query": cfg.get("neg_query", "linear"),
        "gate_mode": gate,
    }  # fmt: skip


def _mlp(n: int, cfg: dict[str, Any]) -> int:
    d_ff = cfg.get("d_ff") or 4 * cfg["d_model"]
    return 2 * 2 * n * cfg["d_model"] * d_ff


def _add(total: dict[str, int], part: dict[str, int]) -> None:
    for k, v in part.items():
        total[k] = total.get(k, 0) + v


def lm_forward_flops(
    cfg: dict[str, Any], batch: int, seq_len: int, causal_half: bool = False
) -> dict[str, int]:
    """Forward FLOPs of a ``TransformerLM`` (its config as ``LMConfig.to_dict()``) on a batch
    ``(batch, seq_len)``: the attention terms summed over layers, ``"mlp"``, ``"head"`` and
    ``"total"``."""
    from gpam.models.config import LMConfig

    c = LMConfig.from_dict(cfg)
    d = c.to_dict()
    total: dict[str, int] = {}
    for i in range(c.n_layers):
        v = c.variant_for(c.attention, i, c.n_layers)
        kw = _layer_kw(d, v)
        _add(total, attention_flops(v, n_q=seq_len, n_k=seq_len, causal_half=causal_half, **kw))
    total["mlp"] = c.n_layers * _mlp(seq_len, d)
    total["head"] = 2 * seq_len * c.d_model * c.vocab_size
    return _finish(total, batch)


def seq2seq_forward_flops(
    cfg: dict[str, Any], batch: int, src_len: int, tgt_len: int, causal_half: bool = False
) -> dict[str, int]:
    """Forward FLOPs of a ``Seq2SeqTransformer`` (config as ``Seq2SeqConfig.to_dict()``) on a
    padded batch: ``batch`` sources of ``src_len`` tokens, decoder inputs of ``tgt_len``."""
    from gpam.models.config import Seq2SeqConfig

    c = Seq2SeqConfig.from_dict(cfg)
    d = c.to_dict()
    ne, nd = c.n_encoder_layers, c.n_decoder_layers
    total: dict[str, int] = {}
    for i in range(ne):
        v = c.variant_for(c.encoder_attention, i, ne)
        _add(total, attention_flops(v, n_q=src_len, n_k=src_len, **_layer_kw(d, v)))
    for i in range(nd):
        v = c.variant_for(c.decoder_attention, i, nd)
        kw = _layer_kw(d, v)
        _add(total, attention_flops(v, n_q=tgt_len, n_k=tgt_len, causal_half=causal_half, **kw))
        v = c.variant_for(c.cross_attention, i, nd)
        _add(total, attention_flops(v, n_q=tgt_len, n_k=src_len, **_layer_kw(d, v)))
    total["mlp"] = ne * _mlp(src_len, d) + nd * _mlp(tgt_len, d)
    total["head"] = 2 * tgt_len * c.d_model * c.tgt_vocab_size
    return _finish(total, batch)


def _finish(total: dict[str, int], batch: int) -> dict[str, int]:
    out = {k: batch * v for k, v in total.items()}
    out["total"] = sum(out.values())
    return out


def batch_shape(batch: Any) -> tuple[int, ...]:
    """The sizes a training batch's forward FLOPs depend on: ``(B, T)`` for a language-model
    ``(inputs, targets)`` pair or a synthetic batch (``.inputs``), ``(B, S, T)`` for a
    translation batch (a dict with ``"src"`` and ``"tgt_in"``)."""
    if isinstance(batch, dict) and "src" in batch:
        b, s = batch["src"].shape
        return (int(b), int(s), int(batch["tgt_in"].shape[1]))
    x = batch.inputs if hasattr(batch, "inputs") else batch[0]
    b, t = x.shape
    return (int(b), int(t))


def forward_flops(cfg: dict[str, Any], shape: tuple[int, ...]) -> int:
    """Forward FLOPs of the model of config dict ``cfg`` on one batch of :func:`batch_shape`
    ``shape`` (a seq2seq config when ``shape`` has three sizes)."""
    if len(shape) == 3:
        return seq2seq_forward_flops(cfg, *shape)["total"]
    return lm_forward_flops(cfg, *shape)["total"]


class BatchShapes:
    """A training task that records the shape of every batch the engine draws (so the FLOPs
    of a run are those of the batches it trained on, padding included); everything else is
    the wrapped task's."""

    def __init__(self, task: Any) -> None:
        self._task = task
        self.shapes: list[tuple[int, ...]] = []

    def batch(self, pos: dict[str, int]) -> tuple[Any, dict[str, int]]:
        b, pos = self._task.batch(pos)
        self.shapes.append(batch_shape(b))
        return b, pos

    def __getattr__(self, name: str) -> Any:
        return getattr(self._task, name)


def training_flops(cfg: dict[str, Any], shapes: Iterable[tuple[int, ...]], steps: int) -> float:
    """Training FLOPs of a run: :data:`TRAIN_FACTOR` x the forward FLOPs of the recorded batch
    ``shapes``, scaled to ``steps`` when fewer were recorded (a resumed run records only the
    batches after its restart; one batch per step)."""
    counts: dict[tuple[int, ...], int] = {}
    for s in shapes:
        counts[s] = counts.get(s, 0) + 1
    n = sum(counts.values())
    if n == 0:
        return 0.0
    fwd = sum(k * forward_flops(cfg, s) for s, k in counts.items())
    return float(TRAIN_FACTOR * fwd * max(1.0, steps / n))
