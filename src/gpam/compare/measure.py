"""Per-run measurements: parameters, peak memory, step time, rank collapse of trained models.

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` over the run. On CPU there is no
allocator high-water mark per run (``ru_maxrss`` only grows for the whole process), so the figure
is an *estimate of one training step's peak*: parameters + gradients + optimizer state + every
tensor saved for backward during one forward pass (collected with
``torch.autograd.graph.saved_tensors_hooks``, each storage counted once). It is deterministic and
compares variants fairly; it excludes temporaries freed during the forward pass.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def count_parameters(model: nn.Module) -> int:
    """Number of distinct parameters (tied weights counted once)."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


def _storage_key(t: Tensor) -> tuple[int, int]:
    try:
        return (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
    except (RuntimeError, NotImplementedError):  # pragma: no cover - exotic tensors
        return (id(t), t.numel() * t.element_size())


def activation_bytes(model: nn.Module, loss_fn, *args, **kwargs) -> int:
    """Bytes of the tensors autograd saves for backward in one ``loss_fn(model, ...)`` call.

    Parameters are excluded (they are counted separately); shared storages count once.
    """
    params = {_storage_key(p) for p in model.parameters()}
    seen: dict[tuple[int, int], int] = {}

    def pack(t: Tensor) -> Tensor:
        key = _storage_key(t)
        if key not in params and key not in seen:
            seen[key] = key[1]
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = loss_fn(model, *args, **kwargs)
    del loss
    return int(sum(seen.values()))


def state_bytes(model: nn.Module, optimizer_slots: int = 2) -> int:
    """Bytes of parameters + gradients + ``optimizer_slots`` optimizer buffers (Adam: 2)."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel() * p.element_size() * (2 + optimizer_slots)
    return total


@torch.no_grad()
def final_hidden_states(model: nn.Module, input_ids: Tensor) -> Tensor:
    """Hidden states ``(B, T, d)`` after the model's last Transformer block (before the final norm).

    Works for ``gpam.models.TransformerLM`` (``model.blocks``); other models need a ``blocks``
    ``nn.ModuleList`` attribute.
    """
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.ModuleList) or len(blocks) == 0:
        raise TypeError("model must have a non-empty `blocks` nn.ModuleList (e.g. TransformerLM)")
    captured: list[Tensor] = []

    def hook(_m: nn.Module, _inp: object, out: object) -> None:
        captured.append(out[0] if isinstance(out, tuple) else out)

    handle = blocks[-1].register_forward_hook(hook)
    was_training = model.training
    model.eval()
    try:
        model(input_ids)
    finally:
        handle.remove()
        model.train(was_training)
    return captured[-1]


def rank_collapse(hidden: Tensor, keep: Tensor | None = None) -> float:
    """Mean over sequences of ``||X - 1 mean(X)^T||_F / ||X||_F`` (``gpam.analysis.measures``).

    ``hidden`` ``(B, T, d)``; ``keep`` ``(B, T)`` bool selects the token rows of each sequence
    (e.g. not padding). 0 means every token has collapsed to one vector.
    """
    from gpam.analysis.measures import relative_residual_fro

    h = hidden.double()
    if keep is None:
        return float(relative_residual_fro(h).mean())
    vals = [relative_residual_fro(h[b, keep[b]]) for b in range(h.shape[0]) if keep[b].sum() > 1]
    if not vals:
        raise ValueError("keep must select at least two tokens in some sequence")
    return float(torch.stack(vals).mean())
