"""``gpam analyze phase --checkpoint``: where training put a model's own attention layers.

The checkpoint (a ``TransformerLM`` or a ``Seq2SeqTransformer``'s encoder) is measured twice:
as trained, and re-initialised (the same configuration built fresh with ``seed``). Inputs are
random token ids through the model's own embedding and positions; trials vary the ids only.
Per layer, at the attention input of the model's own forward (its norms, its causal mask):

* ``logit_std``: standard deviation of ``Q K^T * scale`` over all query-key pairs
  (``logit_std_neg``: daGPAM's negative-query logits);
* ``jacobian_rel``: logit-Jacobian norm relative to a uniform row over the visible keys
  (:func:`gpam.analysis.phase_maps.jacobian_rel`); rows with one visible key are skipped;
* ``region_quantity``: Lemma 1's quantity, largest over heads (gamma = 1 assumed);
* ``residual_model``: relative residual after each of the model's full layers;
* ``residual_stack``: relative residual of its attention layers alone as an ``architecture``
  stack (default ``attention_norm``: ``X_{l+1} = SA(rmsnorm(X_l))``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from gpam._io import atomic_write_json, atomic_write_text
from gpam.analysis.checkpoint import _embed, _parts, run_layer
from gpam.analysis.measures import relative_residual_fro
from gpam.analysis.phase_maps import jacobian_rel, logit_std, region_quantity
from gpam.analysis.rank_collapse import DTYPES, StackConfig
from gpam.analysis.report import fmt

STACKS = ("attention", "attention_norm")


def _attention_input(layer: nn.Module, x: Tensor) -> Tensor:
    return layer.norm1(x) if getattr(layer, "pre", True) else x


def _column_mean(rows: list[list[float | None]]) -> list[float | None]:
    out = []
    for col in zip(*rows, strict=True):
        vals = [v for v in col if v is not None and math.isfinite(v)]
        out.append(sum(vals) / len(vals) if len(vals) == len(col) else None)
    return out


@torch.no_grad()
def measure_model(
    model: nn.Module, cfg: StackConfig, architecture: str, gamma: float, bar: tqdm | None = None
) -> dict[str, Any]:
    """Per-layer measures of one model (see the module doc), each a list over layers."""
    layers, emb, _, _, causal = _parts(model)
    dtype = DTYPES[cfg.dtype]
    keys = ("logit_std", "logit_std_neg", "jacobian_rel", "residual_model", "residual_stack")
    rows: dict[str, list[list[float | None]]] = {k: [] for k in keys}
    for t in range(cfg.trials):
        gen = torch.Generator().manual_seed(cfg.seed + t)
        ids = torch.randint(0, emb.num_embeddings, (cfg.batch, cfg.length), generator=gen)
        x0, rotary = _embed(model, ids, dtype)
        x, xs = x0, x0
        per: dict[str, list[float | None]] = {k: [] for k in keys}
        for layer in layers:
            mha = layer.self_attn
            y = _attention_input(layer, x)
            std = logit_std(mha, y, rotary)
            per["logit_std"].append(std["S"])
            per["logit_std_neg"].append(std.get("S_neg"))
            jac = jacobian_rel(mha, y, rotary, is_causal=causal)
            per["jacobian_rel"].append(None if jac is None else float(jac.nanmean()))
            x = run_layer(layer, x, causal, rotary)
            per["residual_model"].append(float(relative_residual_fro(x).mean()))
            ys = F.rms_norm(xs, (xs.shape[-1],)) if architecture == "attention_norm" else xs
            xs = mha(ys, is_causal=causal, rotary=rotary)
            per["residual_stack"].append(float(relative_residual_fro(xs).mean()))
        for k in keys:
            rows[k].append(per[k])
        if bar is not None:
            bar.update(1)
    out: dict[str, Any] = {k: _column_mean(v) for k, v in rows.items()}
    regions = [region_quantity(layer.self_attn, gamma) for layer in layers]
    out["region_quantity"] = [None if r is None else float(r.max()) for r in regions]
    out["variants"] = [layer.self_attn.attention for layer in layers]
    return out


def phase_checkpoint(
    checkpoint: str | Path,
    *,
    show_progress: bool = True,
    length: int = 32,
    trials: int = 3,
    batch: int = 2,
    seed: int = 0,
    dtype: str = "float64",
    gamma: float = 1.0,
    architecture: str = "attention_norm",
    **ignored: Any,
) -> dict:
    """Measure a saved model and its re-initialised twin; ``{"config", "models": [trained,
    init]}`` with per-layer lists (see the module doc)."""
    from gpam.models import from_pretrained
    from gpam.models.io import model_config_dict, model_from_config_dict

    cfg = StackConfig(length=length, trials=trials, batch=batch, seed=seed, dtype=dtype)
    cfg.validate()
    if architecture not in STACKS:
        raise ValueError(f"architecture must be one of {STACKS}, got {architecture!r}")
    if not (isinstance(gamma, (int, float)) and gamma > 0):
        raise ValueError(f"gamma must be a number > 0, got {gamma!r}")
    trained = from_pretrained(checkpoint).to(DTYPES[dtype]).eval()
    torch.manual_seed(seed)
    fresh = model_from_config_dict(model_config_dict(trained)).to(DTYPES[dtype]).eval()
    models = []
    with tqdm(total=2 * trials, desc="checkpoint", unit="trial", disable=not show_progress) as bar:
        for which, model in (("trained", trained), ("init", fresh)):
            m = measure_model(model, cfg, architecture, gamma, bar)
            first = _parts(model)[0][0].self_attn
            if first.attention == "dagpam":
                lp, ln = first.lambdas()
                m["lam_pos"] = float(torch.as_tensor(lp).mean())
                m["lam_neg"] = float(torch.as_tensor(ln).mean())
                m["neg_query"] = first.neg_query
            models.append({"which": which, **m})
    config = {
        "checkpoint": str(checkpoint),
        "length": length,
        "trials": trials,
        "batch": batch,
        "seed": seed,
        "dtype": dtype,
        "gamma": gamma,
        "architecture": architecture,
        "causal": _parts(trained)[4],
        "inputs": "random token ids through the model's embedding and positions",
        "init": f"the same configuration built fresh after torch.manual_seed({seed})",
    }
    return {"config": config, "models": models}


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals and len(vals) == len(values) else None


def checkpoint_sentences(result: dict) -> list[str]:
    """Sentences computed from a :func:`phase_checkpoint` result."""
    trained, init = result["models"]
    out = []
    s_t, s_i = _mean(trained["logit_std"]), _mean(init["logit_std"])
    if s_t is not None and s_i is not None and s_i > 0:
        out.append(
            f"Training moved the logit std (layer mean) from {fmt(s_i)} at initialisation to "
            f"{fmt(s_t)} ({fmt(s_t / s_i)}x)."
        )
    j_t, j_i = _mean(trained["jacobian_rel"]), _mean(init["jacobian_rel"])
    if j_t is not None and j_i is not None:
        state = "above" if j_t > 1 else "at or below"
        out.append(
            f"The logit Jacobian is {fmt(j_t)}x a uniform row's after training ({state} uniform; "
            f"{fmt(j_i)}x at initialisation)."
        )
    regs = trained["region_quantity"]
    if regs and all(r is not None for r in regs):
        inside = sum(r < 1 for r in regs)
        out.append(
            f"Lemma 1's quantity after training: {', '.join(fmt(r) for r in regs)} per layer "
            f"({inside} of {len(regs)} layers inside the region, i.e. < 1; "
            f"{fmt(_mean(init['region_quantity']))} mean at initialisation)."
        )
    r_t, r_i = trained["residual_stack"][-1], init["residual_stack"][-1]
    if r_t is not None and r_i is not None:
        out.append(
            f"Its attention layers alone ({result['config']['architecture']} stack) leave a "
            f"final relative residual of {fmt(r_t)} ({fmt(r_i)} at initialisation)."
        )
    return out


def write_phase_checkpoint(result: dict, out: Path) -> list[Path]:
    """``phase_checkpoint.json`` and ``report.md`` in ``out``."""
    out = Path(out)
    written = [atomic_write_json(out / "phase_checkpoint.json", result)]
    cfg = result["config"]
    keys = ("logit_std", "logit_std_neg", "jacobian_rel", "region_quantity")
    keys += ("residual_model", "residual_stack")
    lines = [
        f"# Trained model vs its initialisation: `{cfg['checkpoint']}`",
        "",
        f"Inputs: {cfg['inputs']}, length {cfg['length']}, {cfg['trials']} trials x batch "
        f"{cfg['batch']}, {cfg['dtype']}, causal={cfg['causal']}; gamma = {cfg['gamma']:g} "
        "assumed in Lemma 1's quantity.",
        "",
    ]
    lines += [f"- {s}" for s in checkpoint_sentences(result)]
    lines.append("")
    for m in result["models"]:
        n = len(m["logit_std"])
        lines += [f"## {m['which']} ({'/'.join(dict.fromkeys(m['variants']))})", ""]
        lines.append("| measure | " + " | ".join(f"layer {i + 1}" for i in range(n)) + " |")
        lines.append("| --- |" + " --- |" * n)
        for k in keys:
            lines.append(f"| {k} | " + " | ".join(fmt(v) for v in m[k]) + " |")
        lines.append("")
    written.append(atomic_write_text(out / "report.md", "\n".join(lines)))
    return written
