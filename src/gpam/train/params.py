"""The one weight-decay policy of every gpam training run (``gpam train``, ``gpam compare``,
``gpam.hf.finetune``).

Decayed: weight matrices and tensors of two or more dimensions: linear projections, daGPAM's
per-head negative-query maps (``neg_weight``), token and learned position embeddings. With tied
embeddings the token embedding is also the output projection, so it is treated as one.

Not decayed, because shrinking them towards zero changes what the model computes rather than
regularising a projection:
- biases and any other 1-D tensor (offsets, not scales of a learned map);
- normalisation weights (``norm`` in the name): decay pulls the gain towards 0, not towards 1;
- daGPAM / Diff / other lambdas (a name component starting with ``lam`` or holding ``lambda``):
  a lambda sets how much negative attention a head uses; decay would bias it towards 0 (plain
  softmax) and so favour one end of the comparison.

Only parameters with ``requires_grad`` are put into a group (frozen ones are left out).
"""

from __future__ import annotations

from torch import nn


def decays(name: str, param: nn.Parameter) -> bool:
    """Whether the parameter named ``name`` (as in ``named_parameters``) gets weight decay."""
    parts = name.lower().split(".")
    if param.dim() < 2:
        return False
    if any("norm" in p for p in parts):
        return False
    return not any(p.startswith("lam") or "lambda" in p for p in parts)


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW parameter groups: ``[{decayed, weight_decay}, {the rest, 0.0}]`` (see the module
    docstring); each group also holds ``names``, the parameter names in it."""
    if not weight_decay >= 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    groups = {True: ([], []), False: ([], [])}
    for name, p in model.named_parameters():
        if p.requires_grad:
            params, names = groups[decays(name, p)]
            params.append(p)
            names.append(name)
    return [
        {"params": groups[True][0], "names": groups[True][1], "weight_decay": weight_decay},
        {"params": groups[False][0], "names": groups[False][1], "weight_decay": 0.0},
    ]
