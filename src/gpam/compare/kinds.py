"""What a comparison needs from each kind of task (synthetic, language modelling; translation is
in :mod:`gpam.compare.nmt`): the model of a run, its engine task, the final metric, the
rank-collapse measure. Training itself is :func:`gpam.train.train_loop`'s job.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import torch
from torch import nn

from gpam.compare import measure
from gpam.compare.grid import CompareConfig, RunSpec
from gpam.data.lm import LMCorpus, eval_windows
from gpam.data.synthetic import PAD
from gpam.data.tokenizer import Tokenizer


class Kind(Protocol):
    """The task side of a comparison."""

    name: str
    metric: str
    tokenizer: Tokenizer | None

    def describe(self) -> dict[str, Any]: ...

    def model_config(self, config: CompareConfig, spec: RunSpec) -> Any: ...

    def build(self, model_config: Any) -> nn.Module: ...

    def engine_task(self, config: CompareConfig, seed: int, device: torch.device) -> Any: ...

    def rank_collapse(self, model: nn.Module, task: Any) -> float: ...

    def final_metric(
        self, model: nn.Module, result: dict[str, Any], device: torch.device
    ) -> float: ...


def build_model_config(config_cls: type, config: CompareConfig, spec: RunSpec, **kw: Any) -> Any:
    """``config_cls`` (LMConfig, Seq2SeqConfig) from the grid's shared size settings, the kind's
    own ``kw`` and the variant's model options; ValueError naming an option the class lacks."""
    kw = {
        "d_model": config.d_model,
        "n_heads": config.n_heads,  # a run's options may set it (e.g. softmax-2h)
        "dropout": config.dropout,
        "attention_layers": config.attention_layers,
        **kw,
        **spec.model_options(),
    }
    names = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(kw) - names)
    if unknown:
        raise ValueError(
            f"variants: {spec.label!r}: unknown model option(s) {unknown}; "
            f"{config_cls.__name__} has {sorted(names)}"
        )
    return config_cls(**kw)


class DecoderKind:
    """Decoder-only LMs (``gpam.models.TransformerLM``) on a synthetic task or a text corpus."""

    def __init__(self, task: Any) -> None:
        self.task = task
        self.name, self.metric = task.name, task.metric
        self.tokenizer: Tokenizer | None = getattr(task, "tokenizer", None)

    def describe(self) -> dict[str, Any]:
        return self.task.describe()

    def model_config(self, config: CompareConfig, spec: RunSpec) -> Any:
        from gpam.models.config import LMConfig

        return build_model_config(
            LMConfig,
            config,
            spec,
            vocab_size=self.task.vocab_size,
            n_layers=config.n_layers,
            max_len=self.task.seq_len,
            attention=spec.attention,
        )

    def build(self, model_config: Any) -> nn.Module:
        from gpam.models.lm import TransformerLM

        return TransformerLM(model_config)

    def engine_task(self, config: CompareConfig, seed: int, device: torch.device) -> Any:
        t = config.train
        if isinstance(self.task, LMCorpus):
            from gpam.data.lm import LMDataOptions
            from gpam.train.distributed import DistInfo
            from gpam.train.lm import LMTask

            d = LMDataOptions(
                seq_len=self.task.seq_len,
                batch_size=t.batch_size,
                max_eval_tokens=t.max_eval_tokens,
            )
            return LMTask(self.task.train_ids, self.task.val_ids, d, seed, DistInfo(), device)
        from gpam.train.synthetic import SyntheticTrainTask

        return SyntheticTrainTask(
            self.task, t.batch_size, seed, device, t.eval_batches, t.eval_batch_size
        )

    def rank_collapse(self, model: nn.Module, task: Any) -> float:
        if isinstance(self.task, LMCorpus):
            x, _ = next(eval_windows(self.task.val_ids, self.task.seq_len, 16))
            x = x.to(next(model.parameters()).device)
            return measure.rank_collapse(measure.final_hidden_states(model, x))
        inputs = task.val[0].inputs
        hidden = measure.final_hidden_states(model, inputs)
        return measure.rank_collapse(hidden, keep=inputs != PAD)

    def final_metric(self, model: nn.Module, result: dict[str, Any], device: torch.device) -> float:
        return float(result["final_val_metrics"][f"val_{self.metric}"])


def as_kind(task: Any) -> Any:
    """``task`` as a :class:`Kind` (synthetic tasks and :class:`gpam.data.lm.LMCorpus` are
    wrapped; a kind is returned as it is)."""
    if hasattr(task, "engine_task"):
        return task
    return DecoderKind(task)
