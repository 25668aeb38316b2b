"""Parsed command-line options -> settings dataclasses, by field name (used by every layer that
turns an ``argparse.Namespace`` into ``TrainConfig``, ``LMDataOptions``, ``NMTDataOptions``)."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def dataclass_from(cls: type[T], args: argparse.Namespace, **overrides: Any) -> T:
    """``cls(...)`` with every field that ``args`` has an option of the same name for, then
    ``overrides`` (options whose names differ from the field's, or derived values); the other
    fields keep their defaults. TypeError unless ``cls`` is a dataclass."""
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"cls must be a dataclass type, got {cls!r}")
    kw = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    return cls(**{**kw, **overrides})
