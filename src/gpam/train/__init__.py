"""gpam.train: the one training engine (:func:`train_loop`, used by ``gpam train``, every
``gpam compare`` kind and ``gpam.hf.finetune``), its weight-decay policy
(:func:`parameter_groups`), schedules, checkpoints with exact resume, DDP, evaluation
(perplexity, bits per character, BLEU / chrF), sampling and translation."""

from gpam.train.evaluate import (
    evaluate_lm,
    evaluate_nmt,
    generate_text,
    load_model,
    translate,
)
from gpam.train.interrupt import TrainingInterrupted
from gpam.train.lm import LMDataOptions, train_lm
from gpam.train.loop import TrainConfig, Validation, train_loop
from gpam.train.nmt import NMTDataOptions, train_nmt
from gpam.train.params import parameter_groups
from gpam.train.synthetic import SyntheticTrainTask

__all__ = [
    "LMDataOptions",
    "NMTDataOptions",
    "SyntheticTrainTask",
    "TrainConfig",
    "Validation",
    "TrainingInterrupted",
    "evaluate_lm",
    "evaluate_nmt",
    "generate_text",
    "load_model",
    "parameter_groups",
    "train_lm",
    "train_loop",
    "train_nmt",
    "translate",
]
