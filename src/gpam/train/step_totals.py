"""What the training loop keeps on the device between two reads, so that a step needs no host
sync: :class:`StepTotals` (targets, summed loss, the gradient norm and a non-finite flag) and
:func:`make_adamw`, the AdamW whose update a device flag can skip.

The fused AdamW (torch >= 2.4 on CPU and CUDA) takes a ``found_inf`` tensor, as
``torch.amp.GradScaler`` uses it: where it is 1 the update and the step count are left as they
were, decided on the device. Where the fused AdamW is not available the loop falls back to the
default AdamW and reads the flag every step.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def make_adamw(
    groups: list[dict[str, Any]],
    lr: float,
    betas: tuple[float, float],
    device: torch.device,
    fused: bool = True,
) -> tuple[torch.optim.AdamW, bool]:
    """AdamW over ``groups`` and whether it is the fused one (which honours ``found_inf``);
    ``fused=False``: torch's default implementation."""
    if fused and device.type in ("cpu", "cuda"):
        try:
            return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=True), True
        except (RuntimeError, ValueError):  # a dtype or device the fused kernel lacks
            pass
    return torch.optim.AdamW(groups, lr=lr, betas=betas), False


def keep_fused(opt: torch.optim.Optimizer, fused: bool) -> None:
    """After ``load_state_dict``: the groups' ``fused`` flag as built (a checkpoint of the
    default AdamW would switch it off) and each step count where the fused kernel wants it
    (a float32 tensor on the parameter's device)."""
    if not fused:
        return
    for g in opt.param_groups:
        g["fused"] = True
        for p in g["params"]:
            st = opt.state.get(p)
            if st and "step" in st:
                st["step"] = torch.as_tensor(st["step"], dtype=torch.float32).to(p.device)


class StepTotals:
    """Device-side totals of the steps since the last :meth:`read`.

    :meth:`add` takes a step's ``(targets, summed loss)`` float64 pair and its gradient norm and
    returns the ``found_inf`` flag of the step (float32 0-dim, 1 from the first step whose loss
    or gradient norm is not finite on); :meth:`read` returns the totals to the host (the one
    sync) and starts again.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._reset()

    def _reset(self) -> None:
        # targets, summed loss, steps before the first non-finite one
        self.sums = torch.zeros(3, dtype=torch.float64, device=self.device)
        self.bad = torch.zeros((), dtype=torch.bool, device=self.device)
        self.gnorm = torch.zeros((), dtype=torch.float64, device=self.device)
        self.count = 0

    def add(self, sums: Tensor, gnorm: Tensor) -> Tensor:
        """Add one optimiser step; the returned flag is 1 once any step so far was non-finite."""
        gnorm = gnorm.detach().to(torch.float64)
        self.bad = self.bad | ~(torch.isfinite(gnorm) & torch.isfinite(sums[1]))
        self.sums += torch.cat([sums, (~self.bad).to(torch.float64).reshape(1)])
        self.gnorm = gnorm
        self.count += 1
        return self.bad.to(torch.float32)

    def read(self) -> tuple[float, float, int | None, float]:
        """``(targets, summed loss, k, last gradient norm)`` of the steps since the last read,
        where ``k`` is the 1-based index among them of the first non-finite step (None when
        every step was finite). Reads the device once and resets."""
        tok, loss, clean, gnorm = torch.cat([self.sums, self.gnorm.reshape(1)]).tolist()
        first_bad = int(clean) + 1 if int(clean) < self.count else None
        self._reset()
        return tok, loss, first_bad, gnorm
