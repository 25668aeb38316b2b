"""Training checkpoints without pickle: safetensors for tensors, JSON for everything else.

A checkpoint is a folder ``ckpt-<step>`` holding ``model.safetensors`` + ``config.json`` (via
``gpam.models.save_pretrained``), ``tokenizer.json``, ``trainer_state.safetensors`` (optimiser
moments, RNG states) and ``trainer_state.json`` (step, schedule, data position, early-stopping
state, numpy/python RNG). Every file is written atomically; ``latest.json`` is replaced last and
names the complete checkpoint, so a kill at any moment leaves a usable one.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gpam._io import atomic_save_safetensors, atomic_write_json
from gpam.data.tokenizer import Tokenizer

LATEST = "latest.json"


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Current torch / CUDA / numpy / python RNG states as (tensors, JSON)."""
    tensors = {"rng/torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda/{i}"] = s
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["rng/numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    py = random.getstate()
    meta = {
        "numpy": [kind, int(pos), int(has_gauss), float(cached)],
        "python": [py[0], list(py[1]), py[2]],
    }
    return tensors, meta


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Restore states saved by :func:`rng_state`."""
    torch.set_rng_state(tensors["rng/torch"])
    if torch.cuda.is_available():
        cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng/cuda/"))]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
    kind, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state(
        (kind, tensors["rng/numpy"].numpy().astype(np.uint32), pos, has_gauss, cached)
    )
    v, internal, gauss = meta["python"]
    random.setstate((v, tuple(internal), gauss))


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
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(
    root: Path,
    model: nn.Module,
    tokenizer: Tokenizer,
    opt: torch.optim.Optimizer,
    trainer: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Write ``root/ckpt-<step>`` and point ``root/latest.json`` at it; keep the newest ``keep``."""
    from gpam.models import save_pretrained

    step = int(trainer["step"])
    d = root / f"ckpt-{step:08d}"
    if d.exists():
        shutil.rmtree(d)
    save_pretrained(model, d)
    tokenizer.save(d / "tokenizer.json")
    t_opt, m_opt = optimizer_state(opt)
    t_rng, m_rng = rng_state()
    atomic_save_safetensors({**t_opt, **t_rng}, d / "trainer_state.safetensors")
    atomic_write_json(
        d / "trainer_state.json", {"trainer": trainer, "optimizer": m_opt, "rng": m_rng}
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


def load_checkpoint(
    d: Path, model: nn.Module, opt: torch.optim.Optimizer, device: torch.device
) -> dict[str, Any]:
    """Load weights, optimiser and RNG states from checkpoint folder ``d``; return trainer state."""
    from safetensors.torch import load_file

    from gpam.models import load_untied_state_dict

    load_untied_state_dict(model, load_file(str(d / "model.safetensors"), device=str(device)))
    tensors = load_file(str(d / "trainer_state.safetensors"))
    meta = json.loads((d / "trainer_state.json").read_text())
    load_optimizer_state(
        opt,
        {
            k: v.to(device) if k.startswith("opt/") and v.dim() > 0 else v
            for k, v in tensors.items()
        },
        meta["optimizer"],
    )
    set_rng_state(tensors, meta["rng"])
    return meta["trainer"]
