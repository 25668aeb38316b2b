"""``gpam compare nmt``: the variants x seeds grid for translation, through the same runner and
training engine as ``compare lm`` (resume mid-run, run hash, ``--match-params``, peak memory,
rank collapse).

The sentence pairs are read and the shared source/target tokenizer trained once for the whole
grid (as ``gpam train nmt`` does for one run). The final metric is corpus BLEU (sacrebleu,
beam search on the first ``bleu_limit`` validation pairs) or, with ``bleu_limit=0``, validation
perplexity. Rank collapse is measured on the encoder output of the first validation batch
(padding excluded).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gpam.compare import measure
from gpam.compare.grid import CompareConfig, RunSpec
from gpam.compare.kinds import build_model_config
from gpam.compare.runner import run_grid


class NMTKind:
    """Encoder-decoder translation models on sentence pairs (``gpam.train.nmt``'s data)."""

    def __init__(
        self,
        data: Any,
        bleu_limit: int = 200,
        beam_size: int = 1,
        label_smoothing: float = 0.1,
        test: list[tuple[str, str]] | float | None = None,
    ) -> None:
        """``test``: test sentence pairs, or a fraction of the training pairs (their end) held
        out as the test split before the tokenizer is trained (:meth:`test_metric`)."""
        from gpam.data.pairs import encode_pairs
        from gpam.data.tokenizer import train_tokenizer
        from gpam.train.nmt import load_nmt_pairs

        if bleu_limit < 0:
            raise ValueError(f"bleu_limit must be >= 0, got {bleu_limit}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.data, self.bleu_limit, self.beam_size = data, bleu_limit, beam_size
        self.label_smoothing = label_smoothing
        tr, va, self.notes = load_nmt_pairs(data)
        tr, self.test_text = _split_test(tr, test)
        self.test_source = (
            f"the last {test:g} of the training pairs" if isinstance(test, float) else "test files"
        )
        texts = [s for s, _ in tr] + [t for _, t in tr]
        self.tokenizer = train_tokenizer(data.tokenizer, texts, data.vocab_size, data.min_freq)
        self.train_ids, _ = encode_pairs(tr, self.tokenizer, self.tokenizer, data.max_len)
        self.valid_ids, _ = encode_pairs(va, self.tokenizer, self.tokenizer, data.max_len)
        self.valid_text = va
        self.test_ids = (
            encode_pairs(self.test_text, self.tokenizer, self.tokenizer, data.max_len)[0]
            if self.test_text
            else None
        )
        self.metric = "bleu" if bleu_limit > 0 else "perplexity"
        self.name = data.hf_dataset or Path(data.train_src).name

    def describe(self) -> dict[str, Any]:
        if not hasattr(self, "_described"):
            self._described = self._describe()
        return dict(self._described)

    def _describe(self) -> dict[str, Any]:
        import hashlib

        h = hashlib.sha256()
        for pairs in (self.train_ids, self.valid_ids):
            for src, tgt in pairs:
                h.update(bytes(str(src), "ascii") + b"|" + bytes(str(tgt), "ascii") + b";")
        return {
            "task": self.name,
            "metric": self.metric,
            "bleu_limit": self.bleu_limit,
            "beam_size": self.beam_size,
            "label_smoothing": self.label_smoothing,
            "tokenizer": self.tokenizer.kind,
            "vocab_size": self.tokenizer.vocab_size,
            "max_len": self.data.max_len,
            "max_tokens": self.data.max_tokens,
            "train_pairs": len(self.train_ids),
            "valid_pairs": len(self.valid_ids),
            "data_sha256": h.hexdigest()[:16],
        }

    def model_config(self, config: CompareConfig, spec: RunSpec) -> Any:
        from gpam.models.config import Seq2SeqConfig

        return build_model_config(
            Seq2SeqConfig,
            config,
            spec,
            src_vocab_size=self.tokenizer.vocab_size,
            n_encoder_layers=config.n_layers,
            n_decoder_layers=config.n_layers,
            max_len=self.data.max_len + 1,
            encoder_attention=spec.attention,
            decoder_attention=spec.attention,
            cross_attention=spec.attention,
        )

    def build(self, model_config: Any) -> nn.Module:
        from gpam.models.seq2seq import Seq2SeqTransformer

        return Seq2SeqTransformer(model_config)

    def engine_task(self, config: CompareConfig, seed: int, device: torch.device) -> Any:
        from gpam.train.distributed import DistInfo
        from gpam.train.nmt import NMTTask

        return NMTTask(
            self.train_ids,
            self.valid_ids,
            self.data,
            seed,
            DistInfo(),
            device,
            self.label_smoothing,
        )

    def rank_collapse(self, model: nn.Module, task: Any) -> float:
        b = task.valid.get(task.valid.epoch_batches(0)[0])
        dev = next(model.parameters()).device
        was = model.training
        model.eval()
        with torch.no_grad():
            hidden = model.encode(b["src"].to(dev), b["src_padding_mask"].to(dev))
        model.train(was)
        return measure.rank_collapse(hidden, keep=~b["src_padding_mask"].to(dev))

    def final_metric(self, model: nn.Module, result: dict[str, Any], device: torch.device) -> float:
        if self.metric == "perplexity":
            return float(result["final_val_metrics"]["val_perplexity"])
        return self._bleu(model, self.valid_text, device)

    def test_info(self) -> dict[str, Any]:
        """What the test split is (JSON-safe; joins the run hash)."""
        import hashlib

        h = hashlib.sha256("\n".join(f"{a}\t{b}" for a, b in self.test_text).encode())
        return {
            "split": "pairs",
            "test_pairs": len(self.test_text),
            "source": self.test_source,
            "sha256": h.hexdigest()[:16],
        }

    def test_metric(self, model: nn.Module, device: torch.device) -> float:
        """The final metric on the test split (BLEU on its first ``bleu_limit`` pairs, or
        perplexity)."""
        if self.test_ids is None:
            raise ValueError("test: this comparison has no test split")
        if self.metric == "perplexity":
            from gpam.train.distributed import DistInfo
            from gpam.train.nmt import NMTTask

            task = NMTTask(self.train_ids, self.test_ids, self.data, 0, DistInfo(), device, 0.0)
            return float(task.validate(model).metrics["perplexity"])
        return self._bleu(model, self.test_text, device)

    def _bleu(self, model: nn.Module, text: list[tuple[str, str]], device: torch.device) -> float:
        import sacrebleu

        from gpam.train.evaluate import translate

        pairs = text[: self.bleu_limit]
        model.eval()
        hyps = translate(
            model,
            self.tokenizer,
            [s for s, _ in pairs],
            beam_size=self.beam_size,
            device=str(device),
        )
        model.train()
        return float(sacrebleu.corpus_bleu(hyps, [[t for _, t in pairs]]).score)


def _split_test(
    train: list[tuple[str, str]], test: list[tuple[str, str]] | float | None
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(training pairs, test pairs): ``test`` given as pairs, or its fraction of the end of
    ``train``, or none."""
    if test is None:
        return train, []
    if not isinstance(test, float):
        if not test:
            raise ValueError("test: no usable test sentence pairs")
        return train, list(test)
    cut = int(len(train) * (1.0 - test))
    if not 0.0 < test < 1.0 or cut < 1 or cut >= len(train):
        raise ValueError(f"test: cannot hold out {test} of {len(train)} training pairs")
    return train[:cut], train[cut:]


def run_compare_nmt(
    config: CompareConfig,
    data: Any,
    out: str | os.PathLike,
    *,
    bleu_limit: int = 200,
    beam_size: int = 1,
    label_smoothing: float = 0.1,
    progress: bool = True,
) -> dict[str, Any]:
    """Train every variant x seed on ``data`` (a ``gpam.train.nmt.NMTDataOptions``) with the
    training engine and write the comparison report into ``out``."""
    config.validate()
    kind = NMTKind(data, bleu_limit, beam_size, label_smoothing)
    return run_grid(config, kind, out, progress)
