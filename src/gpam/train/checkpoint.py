"""Training checkpoints without pickle: safetensors for tensors, JSON for everything else.

A checkpoint is a folder ``ckpt-<step>`` holding ``model.safetensors`` + ``config.json`` (via
``gpam.models.save_pretrained``), ``tokenizer.json``, ``trainer_state.safetensors`` (optimiser
moments, RNG states) and ``trainer_state.json`` (step, schedule, data position, early-stopping
state, numpy/python RNG, the run's settings: :mod:`gpam.train.resume`). Every file is written
atomically; ``latest.json`` is replaced last and names the complete checkpoint, so a kill at any
moment leaves a usable one.

With early stopping (``patience``) the best validation weights live beside them in
``best-<step>/`` (``model.safetensors`` + ``config.json``); the one the latest checkpoint's
``best_step`` names is kept until a later checkpoint names another.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gpam._io import atomic_save_safetensors, atomic_write_json
from gpam.data.tokenizer import Tokenizer

LATEST = "latest.json"


def rng_state(
    device: torch.device | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """This process's torch / CUDA / numpy / python RNG states as (tensors, JSON).

    The CUDA state saved is the one of ``device`` (or of the current CUDA device) only: a
    process never reads or writes the generators of GPUs other ranks own.
    """
    tensors = {"rng/torch": torch.get_rng_state()}
    cuda = _cuda_device(device)
    if cuda is not None:
        tensors["rng/cuda"] = torch.cuda.get_rng_state(cuda)
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["rng/numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    py = random.getstate()
    meta = {
        "numpy": [kind, int(pos), int(has_gauss), float(cached)],
        "python": [py[0], list(py[1]), py[2]],
    }
    return tensors, meta


def _cuda_device(device: torch.device | None) -> torch.device | None:
    if device is not None and device.type != "cuda":
        return None
    if not torch.cuda.is_available():
        return None
    if device is None or device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def set_rng_state(
    tensors: dict[str, torch.Tensor], meta: dict[str, Any], device: torch.device | None = None
) -> None:
    """Restore states saved by :func:`rng_state` (the CUDA one into ``device`` only)."""
    torch.set_rng_state(tensors["rng/torch"])
    cuda = _cuda_device(device)
    if cuda is not None and "rng/cuda" in tensors:
        torch.cuda.set_rng_state(tensors["rng/cuda"], cuda)
    kind, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state(
        (kind, tensors["rng/numpy"].numpy().astype(np.uint32), pos, has_gauss, cached)
    )
    v, internal, gauss = meta["python"]
    random.setstate((v, tuple(internal), gauss))


RankRNG = list[tuple[dict[str, torch.Tensor], dict[str, Any]]]


def _rank_tensors(states: RankRNG) -> dict[str, torch.Tensor]:
    """``rng/<key>`` of rank r stored as ``rng/<r>/<key>``."""
    return {
        f"rng/{r}/{k.split('/', 1)[1]}": v.cpu()
        for r, (t, _) in enumerate(states)
        for k, v in t.items()
    }


def _tensors_of_rank(tensors: dict[str, torch.Tensor], rank: int) -> dict[str, torch.Tensor]:
    pre = f"rng/{rank}/"
    return {"rng/" + k[len(pre) :]: v for k, v in tensors.items() if k.startswith(pre)}


def optimizer_state(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Optimiser state dict split into tensors (``opt/<param>/<key>``) and JSON."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"opt/{pid}/{k}"] = v
            else:
                scalars[f"{pid}/{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def load_optimizer_state(
    opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict
) -> None:
    """Inverse of :func:`optimizer_state`."""
    state: dict[int, dict[str, Any]] = {}
    for name, v in tensors.items():
        if name.startswith("opt/"):
            _, pid, k = name.split("/", 2)
            state.setdefault(int(pid), {})[k] = v
    for name, v in meta["scalars"].items():
        pid, k = name.split("/", 1)
        state.setdefault(int(pid), {})[k] = v
    groups = meta["param_groups"]
    if all("names" in g for g in groups):
        state, groups = _by_name(opt, state, groups)
    opt.load_state_dict({"state": state, "param_groups": groups})


def _plain_name(name: str) -> str:
    """A parameter name without the ``variant.`` level that gpam 0.2 added inside attention
    layers (``attn.variant.neg_weight`` and ``attn.neg_weight`` are one parameter)."""
    return re.sub(r"(^|\.)variant\.", r"\1", name)


def _by_name(
    opt: torch.optim.Optimizer, state: dict[int, dict[str, Any]], groups: list[dict]
) -> tuple[dict[int, dict[str, Any]], list[dict]]:
    """``state`` and ``groups`` re-keyed so that each saved parameter's state lands on the
    parameter of the same name in ``opt`` (torch matches them by position, and the order of a
    layer's parameters changed when its variant state moved into ``mha.variant``). ValueError
    when the saved and current parameters differ."""
    now = opt.state_dict()["param_groups"]
    if len(now) != len(groups) or not all("names" in g for g in now):
        return state, groups
    ids = {_plain_name(n): pid for g in now for n, pid in zip(g["names"], g["params"])}
    saved = {_plain_name(n): pid for g in groups for n, pid in zip(g["names"], g["params"])}
    for gs, gn in zip(groups, now):
        if sorted(map(_plain_name, gs["names"])) != sorted(map(_plain_name, gn["names"])):
            missing = sorted(set(saved) ^ set(ids))[:4]
            raise ValueError(
                "resume: the checkpoint's optimiser holds other parameters than this model "
                f"(differing: {', '.join(missing) or 'their grouping'})"
            )
    remap = {saved[n]: ids[n] for n in saved}
    new_state = {remap[pid]: st for pid, st in state.items()}
    new_groups = [
        {**gs, "params": gn["params"], "names": gn["names"]} for gs, gn in zip(groups, now)
    ]
    return new_state, new_groups


def checkpoint_dir(root: Path, step: int) -> Path:
    """The folder of the checkpoint of step ``step``: ``root/ckpt-<step>``."""
    return root / f"ckpt-{step:08d}"


def save_checkpoint(
    root: Path,
    model: nn.Module,
    tokenizer: Tokenizer | None,
    opt: torch.optim.Optimizer,
    trainer: dict[str, Any],
    keep: int = 2,
    rng: RankRNG | None = None,
) -> Path:
    """Write ``root/ckpt-<step>`` and point ``root/latest.json`` at it; keep the newest ``keep``.

    ``rng``: the RNG states of every rank, in rank order (default: this process's only); each
    rank restores its own on resume (dropout differs by rank).
    """
    from gpam.models import save_pretrained

    step = int(trainer["step"])
    d = checkpoint_dir(root, step)
    if d.exists():
        shutil.rmtree(d)
    save_pretrained(model, d)
    if tokenizer is not None:
        tokenizer.save(d / "tokenizer.json")
    t_opt, m_opt = optimizer_state(opt)
    states = rng if rng is not None else [rng_state()]
    atomic_save_safetensors({**t_opt, **_rank_tensors(states)}, d / "trainer_state.safetensors")
    atomic_write_json(
        d / "trainer_state.json",
        {"trainer": trainer, "optimizer": m_opt, "rng": [m for _, m in states]},
    )
    atomic_write_json(root / LATEST, {"step": step, "path": d.name})
    old = sorted(p for p in root.glob("ckpt-*") if p.is_dir() and p != d)
    for p in old[: max(0, len(old) - (keep - 1))]:
        shutil.rmtree(p, ignore_errors=True)
    return d


def latest_checkpoint(root: Path) -> Path | None:
    """The folder ``root/latest.json`` names, or None when there is none."""
    f = root / LATEST
    if not f.is_file():
        return None
    d = root / json.loads(f.read_text())["path"]
    return d if d.is_dir() else None


def read_trainer_state(d: Path) -> dict[str, Any]:
    """``trainer_state.json`` of checkpoint folder ``d``: ``trainer`` (step, settings, ...),
    ``optimizer`` (parameter groups) and ``rng``; nothing is loaded into a model."""
    return json.loads((d / "trainer_state.json").read_text())


def load_checkpoint(
    d: Path, model: nn.Module, opt: torch.optim.Optimizer, device: torch.device, rank: int = 0
) -> dict[str, Any]:
    """Load weights, optimiser and rank ``rank``'s RNG states from checkpoint folder ``d``;
    return the trainer state. ValueError when the checkpoint holds no state for ``rank`` (it
    was written by a run with fewer processes)."""
    from safetensors.torch import load_file

    from gpam.models import load_untied_state_dict

    try:
        load_untied_state_dict(model, load_file(str(d / "model.safetensors"), device=str(device)))
    except (RuntimeError, ValueError) as e:  # torch's size-mismatch report runs to many lines
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        first = next((ln for ln in lines if "mismatch" in ln), lines[-1] if lines else repr(e))
        raise ValueError(
            f"resume: the weights in {d} do not fit this model (were other model settings "
            f"given?): {first}"
        ) from None
    tensors = load_file(str(d / "trainer_state.safetensors"))
    meta = read_trainer_state(d)
    load_optimizer_state(
        opt,
        {
            k: v.to(device) if k.startswith("opt/") and v.dim() > 0 else v
            for k, v in tensors.items()
        },
        meta["optimizer"],
    )
    if isinstance(meta["rng"], dict):  # a checkpoint of an earlier version: one process
        meta["rng"] = [meta["rng"]]
        tensors = {("rng/0/" + k[4:] if k.startswith("rng/") else k): v for k, v in tensors.items()}
    mine = _tensors_of_rank(tensors, rank)
    if not mine or rank >= len(meta["rng"]):
        raise ValueError(
            f"resume: checkpoint {d} holds RNG states of {len(meta['rng'])} process(es); "
            f"rank {rank} needs the same number of processes as the interrupted run"
        )
    set_rng_state(mine, meta["rng"][rank], device)
    return meta["trainer"]


def best_dir(root: Path, step: int) -> Path:
    """Where the best validation weights of step ``step`` are kept: ``root/best-<step>``."""
    return root / f"best-{step:08d}"


def save_best(root: Path, model: nn.Module, step: int, keep: Iterable[int | None] = ()) -> Path:
    """Write the weights of ``model`` (the best validation loss so far, at ``step``) to
    :func:`best_dir` and delete the other ``best-*`` folders except those of the steps in
    ``keep`` (the one the latest checkpoint names)."""
    from gpam.models import save_pretrained

    d = best_dir(root, step)
    if d.exists():
        shutil.rmtree(d)
    save_pretrained(model, d)
    prune_best(root, [step, *keep])
    return d


def prune_best(root: Path, keep: Iterable[int | None]) -> None:
    """Delete ``root/best-*`` folders other than those of the steps in ``keep``."""
    names = {best_dir(root, s).name for s in keep if s is not None}
    for p in root.glob("best-*"):
        if p.is_dir() and p.name not in names:
            shutil.rmtree(p, ignore_errors=True)


def resume_tokenizer(out: Path, resume: bool) -> Tokenizer | None:
    """The tokenizer of the run in ``out`` to resume (None when not resuming); FileNotFoundError
    when ``resume`` but ``out`` holds no checkpoint."""
    from gpam.data.tokenizer import load_tokenizer

    if not resume:
        return None
    ck = latest_checkpoint(out / "checkpoints")
    if ck is None:
        raise FileNotFoundError(f"--resume: no checkpoint in {out / 'checkpoints'}")
    return load_tokenizer(ck / "tokenizer.json")
