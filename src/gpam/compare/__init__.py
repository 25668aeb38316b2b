"""Comparisons of attention variants: grids of variants x seeds at an equal budget, with reports.

``run_compare(CompareConfig(...), task, out)`` for synthetic tasks and text corpora
(:mod:`gpam.compare.corpus`), ``run_compare_nmt`` for translation (:mod:`gpam.compare.nmt`),
``run_demo`` for ``gpam demo``; statistics in :mod:`gpam.compare.stats`.
"""

from gpam.compare.runner import CompareConfig, run_compare
from gpam.compare.trainer import TrainSettings

__all__ = ["CompareConfig", "TrainSettings", "run_compare"]
