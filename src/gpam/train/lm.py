"""Train a ``TransformerLM`` on a plain-text file or a Hugging Face dataset: :func:`train_lm`."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gpam.data.lm import LMStream, encode_corpus, eval_windows
from gpam.data.text import read_lines, read_text, split_text
from gpam.data.tokenizer import Tokenizer, load_tokenizer, train_tokenizer
from gpam.train.distributed import DistInfo, cleanup, setup_distributed
from gpam.train.loop import TrainConfig, summed_nll, train_loop
from gpam.train.report import params_line, plot_loss, write_report


@dataclass
class LMDataOptions:
    """Where the LM text comes from and how it is tokenised."""

    train: str | None = None
    valid: str | None = None
    holdout_fraction: float = 0.1
    hf_dataset: str | None = None
    hf_config: str | None = None
    hf_column: str = "text"
    hf_data_files: Any = None
    tokenizer: str = "char"
    vocab_size: int | None = None
    min_freq: int = 1
    skip_bad: bool = False
    seq_len: int = 128
    batch_size: int = 32
    max_eval_tokens: int | None = 200_000


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and python ``random``."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def load_lm_texts(d: LMDataOptions) -> tuple[Any, Any, list[str]]:
    """(train corpus, validation corpus, notes on skipped lines); str for char, lines otherwise."""
    notes: list[str] = []
    char = d.tokenizer == "char"
    if d.hf_dataset:
        tr = load_hf(d, "train")
        if d.valid:
            va, s = read_lines(d.valid, skip_bad=d.skip_bad)
            notes.append(s.summary())
        else:
            try:
                va = load_hf(d, "validation")
            except ValueError:  # no validation split: hold out the end of train instead
                va = []
        if char:
            tr, va = "\n".join(tr), "\n".join(va)
        if not va:
            tr, va = _holdout(tr, d.holdout_fraction)
            notes.append(f"validation = last {d.holdout_fraction:g} of the training split")
        return tr, va, notes
    if not d.train:
        raise ValueError("give a training text file (--train FILE) or --hf-dataset NAME")
    if char:
        tr, s = read_text(d.train, skip_bad=d.skip_bad)
    else:
        tr, s = read_lines(d.train, skip_bad=d.skip_bad)
    notes.append(s.summary())
    if d.valid:
        if char:
            va, s = read_text(d.valid, skip_bad=d.skip_bad)
        else:
            va, s = read_lines(d.valid, skip_bad=d.skip_bad)
        notes.append(s.summary())
    else:
        tr, va = _holdout(tr, d.holdout_fraction)
        notes.append(f"validation = last {d.holdout_fraction:g} of the training text")
    return tr, va, notes


def load_hf(d: LMDataOptions, split: str) -> list[str]:
    """Lines of a HF split, empty lines dropped."""
    from gpam.data.hf import load_hf_lines

    lines = load_hf_lines(
        d.hf_dataset,
        config=d.hf_config,
        split=split,
        column=d.hf_column,
        data_files=d.hf_data_files,
    )
    return [ln for ln in lines if ln.strip()]


def _holdout(corpus: Any, fraction: float) -> tuple[Any, Any]:
    if isinstance(corpus, str):
        a, b = split_text(corpus, 1.0 - fraction)
        return a, b
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in (0, 1), got {fraction}")
    cut = int(len(corpus) * (1.0 - fraction))
    if cut < 1 or cut >= len(corpus):
        raise ValueError(f"training text has too few lines ({len(corpus)}) to hold out {fraction}")
    return corpus[:cut], corpus[cut:]


class LMTask:
    """Training batches, loss and validation for a language model."""

    def __init__(
        self,
        train_ids: Tensor,
        val_ids: Tensor,
        d: LMDataOptions,
        seed: int,
        dist: DistInfo,
        device: torch.device,
    ) -> None:
        self.stream = LMStream(train_ids, d.seq_len, d.batch_size, seed)
        self.val_ids, self.d, self.dist, self.device = val_ids, d, dist, device

    def batch(self, pos: dict[str, int]) -> tuple[tuple[Tensor, Tensor], dict[str, int]]:
        i = pos.get("batch", 0)
        x, y = self.stream.batch(i, self.dist.rank, self.dist.world_size)
        return (x.to(self.device), y.to(self.device)), {"batch": i + 1}

    def loss(self, model: nn.Module, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, int]:
        x, y = batch
        logits = model(x)
        return F.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1)
        ), y.numel()

    def validate(self, model: nn.Module) -> float:
        return lm_loss(
            model,
            self.val_ids,
            self.d.seq_len,
            self.d.batch_size,
            self.device,
            self.d.max_eval_tokens,
        )


@torch.no_grad()
def lm_loss(
    model: nn.Module,
    ids: Tensor,
    seq_len: int,
    batch_size: int,
    device: torch.device,
    max_tokens: int | None = None,
) -> float:
    """Mean cross-entropy (nats/token) over non-overlapping windows of ``ids`` (N,)."""
    model.eval()
    total, n = 0.0, 0
    for x, y in eval_windows(ids, seq_len, batch_size, max_tokens):
        batch_total, batch_n = summed_nll(model(x.to(device)), y.to(device))
        total, n = total + batch_total, n + batch_n
    return total / n


def train_lm(
    d: LMDataOptions,
    model_kwargs: dict[str, Any],
    cfg: TrainConfig,
    out: Path,
    device: str = "cpu",
    resume: bool = False,
    quiet: bool = False,
    on_step: Any = None,
) -> dict[str, Any]:
    """Train a language model; writes ``out/`` (model/, checkpoints/, log.jsonl, train.json,
    report.md, loss.png) and returns the summary dict (``final_val_loss`` etc.)."""
    from gpam.models import LMConfig, TransformerLM, save_pretrained
    from gpam.train.checkpoint import latest_checkpoint

    dist, dev = setup_distributed(device)
    out = Path(out)
    try:
        seed_everything(cfg.seed)
        tr, va, notes = load_lm_texts(d)
        ck = latest_checkpoint(out / "checkpoints") if resume else None
        if resume and ck is None:
            raise FileNotFoundError(f"--resume: no checkpoint in {out / 'checkpoints'}")
        if ck is not None:
            tok: Tokenizer = load_tokenizer(ck / "tokenizer.json")
        else:
            texts = [tr] if isinstance(tr, str) else tr
            tok = train_tokenizer(d.tokenizer, texts, d.vocab_size, d.min_freq)
        train_ids, val_ids = encode_corpus(tr, tok), encode_corpus(va, tok)
        kw = dict(model_kwargs)
        kw.setdefault("max_len", d.seq_len)
        mcfg = LMConfig(vocab_size=tok.vocab_size, **kw)
        model = TransformerLM(mcfg).to(dev)
        rep = model.parameter_report()
        if dist.is_main:
            print(f"gpam train lm: {mcfg.attention} attention, {params_line(rep)}", flush=True)
        task = LMTask(train_ids, val_ids, d, cfg.seed, dist, dev)
        res = train_loop(model, task, tok, cfg, out, dist, dev, resume, on_step, quiet)
        res.update(
            task="lm",
            parameters=rep,
            model_config=mcfg.to_dict(),
            data_notes=notes,
            tokenizer=tok.kind,
            vocab_size=tok.vocab_size,
            train_tokens=train_ids.numel(),
            val_tokens=val_ids.numel(),
            world_size=dist.world_size,
        )
        if res["final_val_loss"] is not None and tok.kind == "char":
            res["final_val_bpc"] = res["final_val_loss"] / float(np.log(2))
        if dist.is_main:
            save_pretrained(model, out / "model")
            tok.save(out / "model" / "tokenizer.json")
            plot_loss(res["history"], out / "loss.png", f"LM, {mcfg.attention} attention")
            v = res["final_val_loss"]
            lines = [
                f"attention: {mcfg.attention}; {params_line(rep)}",
                f"steps: {res['steps']} ({res['stopped']}), {res['elapsed_s']:.1f} s, "
                f"{res['tokens']:,} training tokens",
                f"final validation loss: {v:.4f} nats/token" if v is not None else "no eval",
                *notes,
                "model: model/ (gpam.models.from_pretrained), curve: loss.png",
            ]
            if "final_val_bpc" in res:
                lines.insert(3, f"final validation bits/char: {res['final_val_bpc']:.4f}")
            write_report(out, "train", "gpam train lm", res, lines)
        return res
    finally:
        cleanup(dist)
