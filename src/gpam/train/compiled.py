"""``torch.compile`` for the training engine (``TrainConfig.compile``, ``--compile``).

:func:`compile_model` compiles a model and runs one forward and backward on the first
training batch to pay the compilation before the first step, so that the time budget and the
step times count training only; the warm-up's gradients are discarded and the RNG state is put
back, so the run draws the same dropout and data as an eager one.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from gpam.train.distributed import DistInfo


def compile_model(
    model: nn.Module,
    task: Any,
    pos: dict[str, int],
    bf16: bool,
    device: torch.device,
    dist: DistInfo,
) -> tuple[nn.Module, float]:
    """``(torch.compile(model), seconds)``: the compiled module (sharing ``model``'s
    parameters) and the wall time of its first forward and backward on ``task.batch(pos)``,
    compilation included. RuntimeError naming ``--compile`` when compilation fails."""
    compiled = torch.compile(model)
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    was = model.training
    model.train()
    t0 = time.perf_counter()
    try:
        batch, _ = task.batch(dict(pos))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss, _ = task.loss(compiled, batch)
        loss.float().backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    except Exception as e:  # (inductor raises many types; the message says what failed)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise RuntimeError(f"--compile: torch.compile failed: {first}") from e
    finally:
        model.zero_grad(set_to_none=True)
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state(cuda_rng, device)
        model.train(was)
    return compiled, time.perf_counter() - t0
