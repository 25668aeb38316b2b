"""Shared test fixtures: offline Hugging Face, real corpora through GPAM_DATA_DIR, determinism."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared real corpora (``$GPAM_DATA_DIR``); tests that need them skip when it is unset."""
    root = os.environ.get("GPAM_DATA_DIR")
    if not root or not Path(root).is_dir():
        pytest.skip("GPAM_DATA_DIR is not set to the shared corpora folder (.ci/run sets it)")
    return Path(root)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
