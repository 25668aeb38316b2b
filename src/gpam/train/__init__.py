"""gpam.train: training loop, schedules, checkpoints with exact resume, DDP, evaluation
(perplexity, bits per character, BLEU / chrF), sampling and translation."""

from gpam.train.evaluate import (
    evaluate_lm,
    evaluate_nmt,
    generate_text,
    load_model,
    translate,
)
from gpam.train.lm import LMDataOptions, train_lm
from gpam.train.loop import TrainConfig, train_loop
from gpam.train.nmt import NMTDataOptions, train_nmt

__all__ = [
    "LMDataOptions",
    "NMTDataOptions",
    "TrainConfig",
    "evaluate_lm",
    "evaluate_nmt",
    "generate_text",
    "load_model",
    "train_lm",
    "train_loop",
    "train_nmt",
    "translate",
]
