"""What a resumed run must share with the run it continues, and what it may change.

Every checkpoint records the run's settings as flat ``"<group>.<name>": value`` pairs in two
lists (``trainer_state.json``, ``trainer.settings``):

* ``fixed``: settings that shape the model, the data or the optimisation. Resuming with any of
  them changed is refused with one ValueError naming each (checkpoint value vs now), before the
  weights are loaded. They are every model-config field (``model.*``: sizes, attention, lambdas,
  ``max_len`` ...), the data options (``data.*``: tokenizer, vocabulary, ``seq_len``,
  ``batch_size``, ``max_tokens``, validation split and cap ...) and a fingerprint of the encoded
  training and validation tokens (``data.fingerprint``), the optimiser and schedule
  (:data:`FIXED_TRAIN_FIELDS`: learning rate, warmup, schedule, weight decay, betas, clipping,
  accumulation, bf16, seed, budget clock), task settings such as ``task.label_smoothing``, and
  ``world_size`` (each rank's batches and RNG stream depend on it).
* ``free``: settings that may change on resume; the new value is applied and the change is
  recorded in the trainer state and ``train.json`` (``resumes``: ``[{"step": N, "changed":
  {name: [old, new]}}]``) and printed. They are :data:`FREE_TRAIN_FIELDS` (``steps`` and
  ``time_budget`` to extend or shorten training; the cosine schedule then decays over the new
  length from the step resumed at; ``patience``, the eval / log / checkpoint frequencies and
  ``compile``) and the data file paths (``data.train`` ...: a moved file is fine, its content
  is checked by the fingerprint).

The device is not a setting: a run may resume on another device.
Checkpoints written before settings were recorded hold only the schedule and the optimiser's
parameter groups; those are compared (weight decay and betas from the parameter groups).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from typing import Any

import torch

from gpam.train.config import SCHEDULE_FIELDS

# TrainConfig fields a resumed run may change, and those it must keep: the learning-rate
# schedule's except its length, the optimiser's, accumulation, precision and the seed (every
# field is in exactly one list)
FREE_TRAIN_FIELDS = (
    "steps",
    "time_budget",
    "patience",
    "eval_every",
    "log_every",
    "checkpoint_every",
    "compile",
)
FIXED_TRAIN_FIELDS = (
    *(f for f in SCHEDULE_FIELDS if f not in FREE_TRAIN_FIELDS),
    "weight_decay",
    "beta1",
    "beta2",
    "clip",
    "accum",
    "bf16",
    "seed",
)
Settings = dict[str, dict[str, Any]]


def _jsonable(v: Any) -> Any:
    """``v`` as it reads back from JSON (tuples become lists), so saved and new values compare."""
    return json.loads(json.dumps(v, default=str))


def _flat(prefix: str, values: Mapping[str, Any]) -> dict[str, Any]:
    return {f"{prefix}.{k}": _jsonable(v) for k, v in values.items()}


def fingerprint(*tensors: torch.Tensor) -> str:
    """Short SHA-256 of the bytes of ``tensors`` (the encoded training and validation data)."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
        h.update(b"|")
    return h.hexdigest()[:16]


def task_settings(
    model: Mapping[str, Any],
    data: Mapping[str, Any],
    free_data: Iterable[str] = (),
    extra: Mapping[str, Any] | None = None,
) -> Settings:
    """The settings a task adds to the engine's: ``model.*`` (the model config dict) and
    ``data.*`` fixed, except the ``free_data`` names (file paths), plus ``extra`` (fixed, full
    names such as ``"task.label_smoothing"``)."""
    free_names = set(free_data)
    return {
        "fixed": {
            **_flat("model", model),
            **_flat("data", {k: v for k, v in data.items() if k not in free_names}),
            **{k: _jsonable(v) for k, v in (extra or {}).items()},
        },
        "free": _flat("data", {k: v for k, v in data.items() if k in free_names}),
    }


def run_settings(cfg: Any, world_size: int, task: Settings | None = None) -> Settings:
    """Every setting of a run: the ``TrainConfig`` ``cfg`` (``train.*``), ``world_size`` and the
    task's (:func:`task_settings`)."""
    c = asdict(cfg)
    unknown = set(c) - set(FIXED_TRAIN_FIELDS) - set(FREE_TRAIN_FIELDS)
    if unknown:  # a new TrainConfig field must be put in one of the two lists
        raise AssertionError(f"TrainConfig fields not classified for resume: {sorted(unknown)}")
    task = task or {"fixed": {}, "free": {}}
    return {
        "fixed": {
            **_flat("train", {k: c[k] for k in FIXED_TRAIN_FIELDS}),
            "world_size": world_size,
            **task["fixed"],
        },
        "free": {**_flat("train", {k: c[k] for k in FREE_TRAIN_FIELDS}), **task["free"]},
    }


def legacy_settings(trainer: Mapping[str, Any], optimizer: Mapping[str, Any]) -> Settings:
    """What a checkpoint without a settings record still tells: its schedule and the weight decay
    and betas of its optimiser's parameter groups."""
    schedule = trainer.get("schedule") or {}
    groups = optimizer.get("param_groups") or []
    fixed = _flat("train", {k: v for k, v in schedule.items() if k in FIXED_TRAIN_FIELDS})
    if groups:
        fixed["train.weight_decay"] = max(float(g["weight_decay"]) for g in groups)
        fixed["train.beta1"], fixed["train.beta2"] = (float(b) for b in groups[0]["betas"])
    free = _flat("train", {k: v for k, v in schedule.items() if k in FREE_TRAIN_FIELDS})
    return {"fixed": fixed, "free": free}


def compare_settings(
    saved: Mapping[str, Any], now: Settings, where: str, partial: bool = False
) -> dict[str, list]:
    """The free settings that changed (``{name: [old, new]}``); ValueError naming every fixed
    setting that differs. ``partial`` (an older checkpoint's :func:`legacy_settings`): compare
    only the names both hold."""
    old, new = saved.get("fixed", {}), now["fixed"]
    names = old.keys() & new.keys() if partial else old.keys() | new.keys()
    missing = "(not set)"
    bad = [
        f"{k} {old.get(k, missing)!r} -> {new.get(k, missing)!r}"
        for k in sorted(names)
        if old.get(k, missing) != new.get(k, missing)
    ]
    if bad:
        raise ValueError(
            f"resume: {where} was trained with other settings (checkpoint -> now): "
            + "; ".join(bad)
            + "; resume with the checkpoint's settings or start a new --out"
        )
    old_free, new_free = saved.get("free", {}), now["free"]
    return {
        k: [old_free[k], new_free[k]]
        for k in sorted(old_free.keys() & new_free.keys())
        if old_free[k] != new_free[k]
    }


def reopen_stops(st: dict[str, Any], cfg: Any) -> None:
    """Clear a time-budget or early-stopping stop that the (changed) free settings no longer
    call for, so a resumed run with a longer budget or more patience continues."""
    budget_left = not cfg.time_budget or st["elapsed"] < cfg.time_budget
    patience_left = not cfg.patience or st["bad_evals"] < cfg.patience
    if (st.get("stopped") == "time_budget" and budget_left) or (
        st.get("stopped") == "early_stopping" and patience_left
    ):
        st["stopped"] = None
