"""Which Hugging Face architectures ``gpam.hf.convert`` supports, and how to read their layers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor, nn


@dataclass(frozen=True)
class Family:
    """How to find and read the attention layers of one transformers architecture family.

    ``query_proj(module)`` returns the positive query projection as ``(weight (H*D, E), bias)``
    in ``nn.Linear`` layout; ``rotary`` says the layer receives ``position_embeddings=(cos, sin)``.
    """

    name: str
    model_types: tuple[str, ...]
    attention_classes: tuple[str, ...]
    causal: bool
    rotary: bool
    num_heads: Callable[[nn.Module], int]
    head_dim: Callable[[nn.Module], int]
    query_proj: Callable[[nn.Module], tuple[Tensor, Tensor | None]]
    skip: Callable[[nn.Module], bool] = lambda m: False


def _gpt2_query(m: nn.Module) -> tuple[Tensor, Tensor | None]:
    # Conv1D stores (in, out) and fuses q, k, v along out: the query is the first embed_dim columns.
    e = m.embed_dim
    return m.c_attn.weight[:, :e].t(), m.c_attn.bias[:e]


def _linear(name: str) -> Callable[[nn.Module], tuple[Tensor, Tensor | None]]:
    def get(m: nn.Module) -> tuple[Tensor, Tensor | None]:
        lin = getattr(m, name)
        return lin.weight, lin.bias

    return get


def _llama_heads(m: nn.Module) -> int:
    return m.config.num_attention_heads


FAMILIES: tuple[Family, ...] = (
    Family(
        name="gpt2",
        model_types=("gpt2",),
        attention_classes=("GPT2Attention",),
        causal=True,
        rotary=False,
        num_heads=lambda m: m.num_heads,
        head_dim=lambda m: m.head_dim,
        query_proj=_gpt2_query,
        skip=lambda m: bool(getattr(m, "is_cross_attention", False)),
    ),
    Family(
        name="llama",
        model_types=("llama", "mistral", "qwen2"),
        attention_classes=("LlamaAttention", "MistralAttention", "Qwen2Attention"),
        causal=True,
        rotary=True,
        num_heads=_llama_heads,
        head_dim=lambda m: m.head_dim,
        query_proj=_linear("q_proj"),
    ),
    Family(
        name="bert",
        model_types=("bert", "roberta"),
        attention_classes=("BertSelfAttention", "RobertaSelfAttention"),
        causal=False,
        rotary=False,
        num_heads=lambda m: m.num_attention_heads,
        head_dim=lambda m: m.attention_head_size,
        query_proj=_linear("query"),
    ),
)

SUPPORTED_MODEL_TYPES: tuple[str, ...] = tuple(t for f in FAMILIES for t in f.model_types)


def family_of(model: nn.Module) -> Family:
    """The :class:`Family` of a transformers model, or a ValueError listing the supported ones."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    for fam in FAMILIES:
        if model_type in fam.model_types:
            return fam
    raise ValueError(
        f"model: gpam.hf.convert does not support model_type {model_type!r} "
        f"({type(model).__name__}); supported model types: {', '.join(SUPPORTED_MODEL_TYPES)}"
    )


def attention_layers(model: nn.Module, fam: Family) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every self-attention layer of ``model`` that ``fam`` can convert."""
    found = [
        (name, m)
        for name, m in model.named_modules()
        if type(m).__name__ in fam.attention_classes and not fam.skip(m)
    ]
    if not found:
        raise ValueError(
            f"model: found no {'/'.join(fam.attention_classes)} layer in {type(model).__name__}"
        )
    return found
