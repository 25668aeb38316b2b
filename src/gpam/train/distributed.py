"""DistributedDataParallel set-up for runs launched by ``torchrun`` (gloo on CPU, nccl on GPU)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as tdist


@dataclass
class DistInfo:
    """This process's place in the run (``world_size == 1`` when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """True on the process that logs and writes checkpoints (rank 0)."""
        return self.rank == 0


def setup_distributed(device: str) -> tuple[DistInfo, torch.device]:
    """Join the process group when ``WORLD_SIZE`` > 1 (set by torchrun); pick this rank's device.

    ``device`` is the user's choice ("cpu", "cuda", "cuda:1"); under DDP with CUDA each rank uses
    ``cuda:LOCAL_RANK``.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available on this machine")
    if world <= 1:
        return DistInfo(), dev
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if dev.type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    if not tdist.is_initialized():
        tdist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(rank, world, local), dev


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op when not distributed)."""
    if info.world_size > 1:
        tdist.barrier()


def all_agree(flag: bool, device: torch.device) -> bool:
    """True only if ``flag`` is True on every rank."""
    t = torch.tensor([0 if flag else 1], device=device)
    tdist.all_reduce(t)
    return int(t.item()) == 0


_HOST_GROUP: list[Any] = []  # the gloo group for host values under nccl, once made


def _host_group() -> Any:
    """The process group that sums host values without a device round trip: the default one
    under gloo, else a gloo group over every rank (made on first use, by every rank alike)."""
    if tdist.get_backend() == "gloo":
        return None
    if not _HOST_GROUP:
        _HOST_GROUP.append(tdist.new_group(backend="gloo"))
    return _HOST_GROUP[0]


def all_sum(values: list[float], info: DistInfo, device: torch.device | None = None) -> list[float]:
    """Element-wise sum of host ``values`` over every rank (float64; the values themselves when
    not distributed). A rank that should not contribute passes 0 for an entry. Summed on the
    host (gloo), so the device is not waited for; ``device`` is not used (kept for callers)."""
    if info.world_size == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64)
    tdist.all_reduce(t, group=_host_group())
    return t.tolist()


def sum_in_place(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """``t`` replaced by its sum over every rank and returned; no host sync (``t`` unchanged
    when not distributed)."""
    if info.world_size > 1:
        tdist.all_reduce(t)
    return t


def from_main(obj: Any, info: DistInfo) -> Any:
    """Rank 0's ``obj`` on every rank (``obj`` itself when not distributed): rank 0 decides."""
    if info.world_size == 1:
        return obj
    box = [obj]
    tdist.broadcast_object_list(box, src=0)
    return box[0]


def gather_to_main(obj: Any, info: DistInfo) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` (on every rank)."""
    if info.world_size == 1:
        return [obj]
    out: list[Any] = [None] * info.world_size
    tdist.all_gather_object(out, obj)
    return out


def rank_seed(seed: int, info: DistInfo) -> int:
    """The torch seed of this rank's dropout and other in-training randomness: ``seed`` on rank
    0 (so a one-process run is unchanged), a different stream on every other rank."""
    return seed + 1_000_003 * info.rank


def cleanup(info: DistInfo) -> None:
    """Leave the process group."""
    if info.world_size > 1 and tdist.is_initialized():
        tdist.destroy_process_group()
    _HOST_GROUP.clear()
