"""The rank-collapse measure on the layers of a trained checkpoint (``gpam.models``).

The model's own self-attention layers (a ``TransformerLM``'s blocks, or a
``Seq2SeqTransformer``'s encoder) are run as stacks on the model's own embedded inputs (random
token ids, embeddings plus positions): ``attention`` (only the attention layers, no skip),
``attention_norm`` (``SA(rmsnorm(X))``), ``attention_skip`` (``X + SA(X)``) and ``preln`` (the
checkpoint's full Transformer layers as trained, whatever their norm placement). The weights are
fixed, so trials vary the random token ids only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from gpam.analysis.measures import relative_residual_composite, relative_residual_fro
from gpam.analysis.rank_collapse import DTYPES, StackConfig, residual_summary
from gpam.analysis.stacks import ARCHITECTURES
from gpam.nn.masks import layer_mask


def _parts(model: nn.Module) -> tuple[nn.ModuleList, nn.Embedding, nn.Module, float, bool]:
    """``(layers, embedding, positions, embed_scale, causal)`` of a gpam model."""
    if hasattr(model, "blocks") and hasattr(model, "tok_emb"):
        return model.blocks, model.tok_emb, model.positions, 1.0, True
    if hasattr(model, "encoder") and hasattr(model, "src_emb"):
        return model.encoder, model.src_emb, model.src_positions, model.embed_scale, False
    raise TypeError(f"cannot find attention layers in a {type(model).__name__}")


def _embed(model: nn.Module, ids: Tensor, dtype: torch.dtype) -> tuple[Tensor, Any]:
    _, emb, positions, scale, _ = _parts(model)
    x = emb(ids).to(dtype) * scale
    absolute, rotary = positions(0, ids.shape[1], x.device, dtype)
    return (x if absolute is None else x + absolute), rotary


def run_layer(layer: nn.Module, x: Tensor, causal: bool, rotary: Any) -> Tensor:
    """One model layer on ``x`` ``(B, T, d)`` with the mask the model would prepare for it
    (no padding; causal or not)."""
    b, t = x.shape[:2]
    mask = layer_mask(None, None, causal, 0, b, t, t, x.dtype, x.device)
    return layer(x, self_mask=mask, rotary=rotary)


def _step(layer: nn.Module, x: Tensor, architecture: str, causal: bool, rotary: Any) -> Tensor:
    if architecture == "preln":
        return run_layer(layer, x, causal, rotary)
    if architecture == "attention_norm":
        return layer.self_attn(F.rms_norm(x, (x.shape[-1],)), is_causal=causal, rotary=rotary)
    y = layer.self_attn(x, is_causal=causal, rotary=rotary)
    return y if architecture == "attention" else x + y


@torch.no_grad()
def rank_collapse_checkpoint(
    checkpoint: str | Path,
    *,
    architectures: Sequence[str] = ARCHITECTURES,
    show_progress: bool = True,
    length: int = 32,
    trials: int = 8,
    batch: int = 4,
    seed: int = 0,
    dtype: str = "float64",
    **ignored: Any,
) -> dict:
    """Residual per layer of a checkpoint's layers; the result has the rank-collapse schema.

    ``depth``, ``width`` and ``heads`` come from the model; ``variants``/``lam_neg`` are the
    model's own and other stack options are ignored.
    """
    from gpam.models import from_pretrained

    cfg = StackConfig(length=length, trials=trials, batch=batch, seed=seed, dtype=dtype)
    cfg.validate()
    bad = [a for a in architectures if a not in ARCHITECTURES]
    if bad or not architectures:
        raise ValueError(f"architectures must be taken from {ARCHITECTURES}, got {bad or '[]'}")
    model = from_pretrained(checkpoint).to(DTYPES[dtype]).eval()
    layers, emb, _, _, causal = _parts(model)
    variants = [layer.self_attn.attention for layer in layers]
    results = []
    total = len(architectures) * trials
    with tqdm(total=total, desc="checkpoint", unit="trial", disable=not show_progress) as bar:
        for arch in architectures:
            fro_rows, comp_rows = [], []
            for t in range(trials):
                gen = torch.Generator().manual_seed(seed + t)
                ids = torch.randint(0, emb.num_embeddings, (batch, length), generator=gen)
                x, rotary = _embed(model, ids, DTYPES[dtype])
                states = [x]
                for layer in layers:
                    x = _step(layer, x, arch, causal, rotary)
                    states.append(x)
                fro_rows.append([relative_residual_fro(h).mean().item() for h in states])
                comp_rows.append([relative_residual_composite(h).mean().item() for h in states])
                bar.update(1)
            first = layers[0].self_attn
            lam_pos, lam_neg = (None, None)
            if first.attention == "dagpam":
                lp, ln = first.lambdas()
                lam_pos, lam_neg = (
                    float(torch.as_tensor(lp).mean()),
                    float(torch.as_tensor(ln).mean()),
                )
            results.append(
                {
                    "variant": "+".join(dict.fromkeys(variants)),
                    "label": f"checkpoint ({'/'.join(dict.fromkeys(variants))})",
                    "lam_pos": lam_pos,
                    "lam_neg": lam_neg,
                    "affine": getattr(first, "affine", None) if lam_neg is not None else None,
                    "architecture": arch,
                    "layers": list(range(len(layers) + 1)),
                    **residual_summary(fro_rows, comp_rows),
                    "seeds": [seed + t for t in range(trials)],
                    "layer_variants": variants,
                }
            )
    config = asdict(cfg)
    first = layers[0].self_attn
    config.update(
        depth=len(layers),
        width=first.embed_dim,
        heads=first.num_heads,
        input_scale=1.0,
        checkpoint=str(checkpoint),
        inputs="random token ids through the model's embedding and positions",
        causal=causal,
        architectures=list(architectures),
        preln="the checkpoint's own full Transformer layers",
    )
    return {"config": config, "results": results}
