"""Save and load models: ``model.safetensors`` + ``config.json`` in one folder, written atomically.

Tied parameters (e.g. the LM's output projection, which is its input embedding) are stored once;
loading rebuilds the model from its config, which re-ties them, then loads the tensors.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from gpam._io import atomic_save_safetensors, atomic_write_json, read_json

from .config import LMConfig, Seq2SeqConfig
from .lm import TransformerLM
from .seq2seq import Seq2SeqTransformer

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
MODEL_CLASSES: dict[str, tuple[type, type]] = {
    "lm": (LMConfig, TransformerLM),
    "seq2seq": (Seq2SeqConfig, Seq2SeqTransformer),
}


def untied_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict without the tied aliases (safe to give to safetensors)."""
    tied = set(getattr(model, "tied_keys", ()))
    return {k: v for k, v in model.state_dict().items() if k not in tied}


def load_untied_state_dict(model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Load tensors saved by :func:`untied_state_dict`; missing or unexpected keys raise."""
    tied = set(getattr(model, "tied_keys", ()))
    tensors = {k: v for k, v in tensors.items() if k not in tied}
    result = model.load_state_dict(tensors, strict=False)
    missing = [k for k in result.missing_keys if k not in tied]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"weights do not match the model: missing {missing[:8]}, "
            f"unexpected {list(result.unexpected_keys)[:8]}"
        )


def model_config_dict(model: nn.Module) -> dict:
    """``{"model_type": ..., "gpam_version": ..., **config.to_dict()}`` for ``config.json``."""
    from gpam import __version__

    for model_type, (_cfg_cls, model_cls) in MODEL_CLASSES.items():
        if isinstance(model, model_cls):
            return {"model_type": model_type, "gpam_version": __version__, **model.config.to_dict()}
    raise TypeError(
        f"model must be a TransformerLM or Seq2SeqTransformer, got {type(model).__name__}"
    )


def model_from_config_dict(data: dict) -> nn.Module:
    """A freshly initialised model from a ``config.json`` dict (``model_type`` picks the class)."""
    if not isinstance(data, dict):
        raise TypeError(f"config must be a JSON object, got {type(data).__name__}")
    model_type = data.get("model_type")
    if model_type not in MODEL_CLASSES:
        raise ValueError(
            f"config model_type must be one of {sorted(MODEL_CLASSES)}, got {model_type!r}"
        )
    cfg_cls, model_cls = MODEL_CLASSES[model_type]
    return model_cls(cfg_cls.from_dict(data))


def save_pretrained(model: nn.Module, directory: str | os.PathLike) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``directory`` (created if needed)."""
    directory = Path(directory)
    config = model_config_dict(model)
    directory.mkdir(parents=True, exist_ok=True)
    metadata = {"format": "pt", "model_type": config["model_type"]}
    atomic_save_safetensors(untied_state_dict(model), directory / WEIGHTS_NAME, metadata)
    atomic_write_json(directory / CONFIG_NAME, config)
    return directory


def from_pretrained(
    directory: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> nn.Module:
    """Rebuild the model saved by :func:`save_pretrained` (in eval mode).

    ``directory`` is the saved folder, or a ``gpam train`` run folder holding it as ``model/``.
    """
    from safetensors.torch import load_file

    directory = Path(directory)
    if not (directory / CONFIG_NAME).is_file() and (directory / "model" / CONFIG_NAME).is_file():
        directory = directory / "model"
    cfg_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    for p in (cfg_path, weights_path):
        if not p.is_file():
            raise FileNotFoundError(f"{p} not found (expected a folder written by save_pretrained)")
    model = model_from_config_dict(read_json(cfg_path))
    load_untied_state_dict(model, load_file(str(weights_path), device=str(map_location)))
    return model.to(map_location).eval()
