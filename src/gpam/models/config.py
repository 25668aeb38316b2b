"""Model configurations: JSON-safe dataclasses with validation (``LMConfig``, ``Seq2SeqConfig``).

Both configs share the attention, lambda, normalisation and position settings
(:class:`_CommonConfig`). Bad values raise ``ValueError``/``TypeError`` naming the field.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

from gpam.functional.registry import VARIANTS
from gpam.nn.dagpam import check_dagpam_settings
from gpam.nn.variant import LayerSpec, params_class, split_attn_kwargs

NORMS = ("pre", "post")
POSITIONS = ("sinusoidal", "learned", "rotary")
LAYER_PATTERNS = ("auto", "all", "inner")
SEQ2SEQ_TIES = ("none", "decoder", "all")


def attention_variants() -> tuple[str, ...]:
    """Attention variant names the core knows (``gpam.VARIANTS``, from the one registry)."""
    return VARIANTS


def _check_int(name: str, value: Any, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _check_float(name: str, value: Any, lo: float, hi: float, hi_open: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    ok = lo <= value < hi if hi_open else lo <= value <= hi
    if not ok or math.isnan(value):
        bracket = ")" if hi_open else "]"
        raise ValueError(f"{name} must be in [{lo}, {hi}{bracket}, got {value}")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")


@dataclass(kw_only=True)
class _CommonConfig:
    """Attention, lambda and layer settings shared by LM and seq2seq configs, keyword-only; the
    size, attention-variant, norm and position fields (whose defaults differ) are the
    subclasses'."""

    model_type: ClassVar[str] = ""

    attention_layers: str | list[int] = "auto"
    lam_neg: float = 0.5
    lam_pos: float | None = None
    affine: bool = True
    learnable_lambda: bool = False
    lambda_param: str = "clamp"
    neg_query: str = "linear"
    lambda_mode: str = "fixed"
    neg_init: str = "orthogonal"
    kv_heads: int | None = None
    bias: bool = True
    attn_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)
    attention_dropout: float = 0.0
    layer_norm_eps: float = 1e-5
    rope_base: float = 10000.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict of every field (lists for tuples, nested dicts copied); the
        subclass's own fields (sizes, variants) first, then the shared keyword-only ones."""
        out: dict[str, Any] = {}
        for f in sorted(dataclasses.fields(self), key=lambda f: f.kw_only):
            v = getattr(self, f.name)
            if isinstance(v, tuple):
                v = list(v)
            elif isinstance(v, dict):
                v = {k: dict(x) if isinstance(x, dict) else x for k, x in v.items()}
            elif isinstance(v, list):
                v = list(v)
            out[f.name] = v
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> _CommonConfig:
        """Rebuild from :meth:`to_dict` output (``model_type`` must match; unknown keys fail)."""
        if not isinstance(data, dict):
            raise TypeError(f"config data must be a dict, got {type(data).__name__}")
        data = dict(data)
        mt = data.pop("model_type", cls.model_type)
        if mt != cls.model_type:
            raise ValueError(
                f"model_type {mt!r} does not match {cls.__name__} ({cls.model_type!r})"
            )
        data.pop("gpam_version", None)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}")
        return cls(**data)

    # -- shared validation -------------------------------------------------------------------
    def _validate_common(self, kinds: dict[str, str], stacks: dict[str, int]) -> None:
        """Check the shared fields; ``stacks`` maps each layer stack's name to its depth (a list
        of ``attention_layers`` must be valid in every stack)."""
        _check_int("d_model", self.d_model)
        _check_int("n_heads", self.n_heads)
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        if self.d_ff is None:
            self.d_ff = 4 * self.d_model
        _check_int("d_ff", self.d_ff)
        _check_int("max_len", self.max_len)
        _check_float("dropout", self.dropout, 0.0, 1.0, hi_open=True)
        _check_float("attention_dropout", self.attention_dropout, 0.0, 1.0, hi_open=True)
        variants = attention_variants()
        for name, value in kinds.items():
            _check_choice(name, value, variants)
        self.lambda_mode = check_dagpam_settings(
            lam_neg=self.lam_neg, lam_pos=self.lam_pos, affine=self.affine,
            lambda_mode=self.lambda_mode, learnable_lambda=self.learnable_lambda,
            lambda_param=self.lambda_param, neg_query=self.neg_query, neg_init=self.neg_init,
        )  # fmt: skip
        self.learnable_lambda = self.lambda_mode == "head"
        if self.kv_heads is not None:
            _check_int("kv_heads", self.kv_heads)
            if self.n_heads % self.kv_heads:
                raise ValueError(f"kv_heads={self.kv_heads} must divide n_heads={self.n_heads}")
        if not isinstance(self.bias, bool):
            raise TypeError(f"bias must be a bool, got {self.bias!r}")
        kvh = self.kv_heads or self.n_heads
        for name, value in kinds.items():  # the variant's own size rules (e.g. diff's pairs)
            cls = params_class(value)
            if cls is not None:
                shape = (self.d_model, self.n_heads, self.d_model // self.n_heads, kvh)
                try:
                    cls.check(LayerSpec(value, *shape))
                except ValueError as err:
                    raise ValueError(f"{name}={value!r}: {err}") from None
        if not isinstance(self.attn_kwargs, dict):
            raise TypeError(
                "attn_kwargs must be a dict keyed by variant name, e.g. "
                f"{{'coda': {{'alpha': 2.0}}}}; got {self.attn_kwargs!r}"
            )
        for k, v in self.attn_kwargs.items():
            if k not in variants or not isinstance(v, dict):
                raise ValueError(
                    "attn_kwargs must map variant names to keyword dicts, e.g. "
                    f"{{'coda': {{'alpha': 2.0}}}}; got key {k!r} -> {v!r}"
                )
            split_attn_kwargs(k, v)  # keys the layer sets (is_causal, masks, ...) are refused
        _check_layers(self.attention_layers, stacks)
        _check_choice("norm", self.norm, NORMS)
        _check_choice("positions", self.positions, POSITIONS)
        if self.positions == "rotary" and (self.d_model // self.n_heads) % 2:
            raise ValueError("positions='rotary' needs an even head dimension d_model/n_heads")
        _check_float("layer_norm_eps", self.layer_norm_eps, 0.0, 1.0)
        _check_float("rope_base", self.rope_base, 1.0, float("inf"))

    def variant_for(self, variant: str, layer: int, n_layers: int) -> str:
        """The attention variant layer ``layer`` of an ``n_layers`` stack uses for kind ``variant``.

        ``attention_layers``: ``"all"``; ``"inner"`` (softmax in the first and last layer, as Cog
        attention's paper does); ``"auto"`` (``"inner"`` for ``cog``, else ``"all"``); or a list of
        layer indices that use ``variant``, softmax elsewhere. A list applies to every stack of
        the model (encoder and decoder alike) and each index must exist in each of them; a
        negative index counts from the end of each stack (``-1`` is the last layer of the
        encoder and the last layer of the decoder), as ``"inner"`` does.
        """
        pattern = self.attention_layers
        if pattern == "auto":
            pattern = "inner" if variant == "cog" else "all"
        if pattern == "all":
            return variant
        if pattern == "inner":
            return "softmax" if layer in (0, n_layers - 1) else variant
        if not 0 <= layer < n_layers:
            raise ValueError(f"layer must be in [0, {n_layers}), got {layer}")
        for i in pattern:
            if not -n_layers <= i < n_layers:
                raise ValueError(
                    f"attention_layers index {i} out of range for a stack of {n_layers} layers"
                )
        return variant if layer in {i % n_layers for i in pattern} else "softmax"


def _check_layers(value: Any, stacks: dict[str, int]) -> None:
    """``attention_layers`` is a pattern name or a list of indices valid in every stack."""
    if isinstance(value, str):
        _check_choice("attention_layers", value, LAYER_PATTERNS)
        return
    if not isinstance(value, (list, tuple)):
        raise TypeError(
            f"attention_layers must be 'auto', 'all', 'inner' or a list of layer "
            f"indices, got {value!r}"
        )
    for i in value:
        if isinstance(i, bool) or not isinstance(i, int):
            raise TypeError(f"attention_layers entries must be ints, got {i!r}")
        for stack, n_layers in stacks.items():
            if not -n_layers <= i < n_layers:
                raise ValueError(
                    f"attention_layers index {i} out of range for the {stack} ({n_layers} "
                    f"layers): a list applies to every stack, so each index must lie in "
                    f"[-{n_layers}, {n_layers - 1}]"
                )


_COMMON_DOC = """
    Shared fields: ``d_model``, ``n_heads``, ``d_ff`` (None -> 4 d_model), ``max_len`` (longest
    sequence; learned positions are sized by it), ``dropout`` (residual, embedding and MLP),
    ``attention_dropout`` (on attention weights), ``attention_layers`` (see
    :meth:`_CommonConfig.variant_for`), daGPAM settings ``lam_neg`` / ``lam_pos`` / ``affine`` /
    ``lambda_mode`` ("fixed", "head" or "token"; ``learnable_lambda=True`` is an alias of "head")
    / ``lambda_param`` / ``neg_query`` / ``neg_init`` (as ``gpam.MultiheadAttention``),
    ``kv_heads`` (grouped-query attention), ``bias``, ``attn_kwargs`` (``{variant: {kw: value}}``
    passed to layers of that variant, e.g. ``{"coda": {"alpha": 2.0}}``), ``norm`` ("pre" or
    "post"), ``positions`` ("sinusoidal", "learned" or "rotary"), ``layer_norm_eps``, ``rope_base``.
"""


@dataclass
class LMConfig(_CommonConfig):
    """Decoder-only language model (``TransformerLM``).

    ``attention`` is the variant of every causal self-attention layer (subject to
    ``attention_layers``); ``tie_embeddings`` ties the input embedding and the output projection.
    """

    model_type: ClassVar[str] = "lm"

    vocab_size: int
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
    d_ff: int | None = None
    max_len: int = 512
    dropout: float = 0.1
    attention: str = "dagpam"
    norm: str = "pre"
    positions: str = "learned"
    tie_embeddings: bool = True

    def __post_init__(self) -> None:
        _check_int("vocab_size", self.vocab_size)
        _check_int("n_layers", self.n_layers)
        if not isinstance(self.tie_embeddings, bool):
            raise TypeError(
                f"tie_embeddings must be a bool for LMConfig, got {self.tie_embeddings!r}"
            )
        self._validate_common({"attention": self.attention}, {"model": self.n_layers})


@dataclass
class Seq2SeqConfig(_CommonConfig):
    """Encoder-decoder translation model (``Seq2SeqTransformer``).

    ``encoder_attention`` / ``decoder_attention`` / ``cross_attention`` pick the variant of the
    encoder self-, decoder causal self- and cross-attention layers. ``tgt_vocab_size`` None means
    the same as ``src_vocab_size``. ``tie_embeddings``: "none", "decoder" (target embedding =
    output projection) or "all" (source, target and output share one matrix; needs one shared
    vocabulary). ``scale_embeddings`` multiplies embeddings by sqrt(d_model) (Vaswani et al.).
    Defaults follow the paper's NMT baselines: post-LN, sinusoidal positions.
    """

    model_type: ClassVar[str] = "seq2seq"

    src_vocab_size: int
    tgt_vocab_size: int | None = None
    d_model: int = 256
    n_encoder_layers: int = 3
    n_decoder_layers: int = 3
    n_heads: int = 4
    d_ff: int | None = None
    max_len: int = 256
    dropout: float = 0.1
    encoder_attention: str = "dagpam"
    decoder_attention: str = "dagpam"
    cross_attention: str = "dagpam"
    norm: str = "post"
    positions: str = "sinusoidal"
    tie_embeddings: str = "decoder"
    scale_embeddings: bool = True

    def __post_init__(self) -> None:
        _check_int("src_vocab_size", self.src_vocab_size)
        if self.tgt_vocab_size is None:
            self.tgt_vocab_size = self.src_vocab_size
        _check_int("tgt_vocab_size", self.tgt_vocab_size)
        _check_int("n_encoder_layers", self.n_encoder_layers)
        _check_int("n_decoder_layers", self.n_decoder_layers)
        _check_choice("tie_embeddings", self.tie_embeddings, SEQ2SEQ_TIES)
        if self.tie_embeddings == "all" and self.src_vocab_size != self.tgt_vocab_size:
            raise ValueError(
                "tie_embeddings='all' needs a shared vocabulary: src_vocab_size="
                f"{self.src_vocab_size} != tgt_vocab_size={self.tgt_vocab_size}"
            )
        if not isinstance(self.scale_embeddings, bool):
            raise TypeError(f"scale_embeddings must be a bool, got {self.scale_embeddings!r}")
        kinds = {
            "encoder_attention": self.encoder_attention,
            "decoder_attention": self.decoder_attention,
            "cross_attention": self.cross_attention,
        }
        stacks = {"encoder": self.n_encoder_layers, "decoder": self.n_decoder_layers}
        self._validate_common(kinds, stacks)


LMConfig.__doc__ = (LMConfig.__doc__ or "") + _COMMON_DOC
Seq2SeqConfig.__doc__ = (Seq2SeqConfig.__doc__ or "") + _COMMON_DOC
