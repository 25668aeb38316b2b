"""Comparisons of attention variants: grids of variants x seeds at an equal budget, with reports.

``run_compare(CompareConfig(...), task, out)`` for synthetic tasks and text corpora (a
``gpam.data.lm.LMCorpus``), ``run_compare_nmt`` for translation (:mod:`gpam.compare.nmt`),
``run_demo`` for ``gpam demo``; statistics in :mod:`gpam.compare.stats`. Every run trains through
the one engine, :func:`gpam.train.train_loop`.
"""

from gpam.compare.grid import CompareConfig, RunSpec, parse_variant
from gpam.compare.runner import run_compare
from gpam.compare.settings import TrainSettings

__all__ = ["CompareConfig", "RunSpec", "TrainSettings", "parse_variant", "run_compare"]
