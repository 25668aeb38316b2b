"""Train a ``TransformerLM`` on a plain-text file or a Hugging Face dataset: :func:`train_lm`."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gpam.data.lm import LMDataOptions, LMStream, eval_windows, prepare_lm_corpus
from gpam.train.checkpoint import resume_tokenizer
from gpam.train.distributed import DistInfo, cleanup, setup_distributed
from gpam.train.loop import TrainConfig, Validation, train_loop
from gpam.train.nll import loss_logits, mean_nll, nats_to_ppl
from gpam.train.report import finish_run, params_line
from gpam.train.resume import fingerprint, task_settings


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and python ``random``."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


__all__ = ["LMDataOptions", "LMTask", "lm_loss", "seed_everything", "train_lm"]


class LMTask:
    """Training batches, loss and validation (loss and perplexity) for a language model:
    the engine task of ``gpam train lm`` and ``gpam compare lm``."""

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
            loss_logits(logits).reshape(-1, logits.shape[-1]), y.reshape(-1)
        ), y.numel()

    def validate(self, model: nn.Module) -> Validation:
        loss = lm_loss(
            model,
            self.val_ids,
            self.d.seq_len,
            self.d.batch_size,
            self.device,
            self.d.max_eval_tokens,
        )
        return Validation(loss, {"perplexity": nats_to_ppl(loss)})


@torch.no_grad()
def lm_loss(
    model: nn.Module,
    ids: Tensor,
    seq_len: int,
    batch_size: int,
    device: torch.device,
    max_tokens: int | None = None,
    logits_fn: Callable[[nn.Module, Tensor], Tensor] | None = None,
) -> float:
    """Mean cross-entropy (nats/token) over non-overlapping windows of ``ids`` (N,) (the model
    is left in eval mode). ``logits_fn(model, x)`` gives the logits (default ``model(x)``;
    Hugging Face models pass ``model(input_ids=x).logits``)."""
    model.eval()
    forward = logits_fn or (lambda m, x: m(x))
    windows = eval_windows(ids, seq_len, batch_size, max_tokens)
    return mean_nll((forward(model, x.to(device)), y.to(device)) for x, y in windows)


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
    from gpam.models import LMConfig, TransformerLM

    dist, dev = setup_distributed(device)
    out = Path(out)
    try:
        seed_everything(cfg.seed)
        corpus = prepare_lm_corpus(d, resume_tokenizer(out, resume))
        tok, train_ids, val_ids = corpus.tokenizer, corpus.train_ids, corpus.val_ids
        kw = dict(model_kwargs)
        kw.setdefault("max_len", d.seq_len)
        mcfg = LMConfig(vocab_size=tok.vocab_size, **kw)
        model = TransformerLM(mcfg, seed=cfg.seed).to(dev)  # paired across variants
        rep = model.parameter_report()
        if dist.is_main:
            print(f"gpam train lm: {mcfg.attention} attention, {params_line(rep)}", flush=True)
        task = LMTask(train_ids, val_ids, d, cfg.seed, dist, dev)
        settings = task_settings(
            mcfg.to_dict(),
            asdict(d),
            free_data=("train", "valid", "hf_data_files"),
            extra={"data.fingerprint": fingerprint(train_ids, val_ids)},
        )
        res = train_loop(
            model, task, tok, cfg, out, dist, dev, resume, on_step, quiet, settings=settings
        )
        res.update(
            task="lm",
            parameters=rep,
            model_config=mcfg.to_dict(),
            data_notes=corpus.notes,
            tokenizer=tok.kind,
            vocab_size=tok.vocab_size,
            train_tokens=train_ids.numel(),
            val_tokens=val_ids.numel(),
            world_size=dist.world_size,
        )
        if res["final_val_loss"] is not None and tok.kind == "char":
            res["final_val_bpc"] = res["final_val_loss"] / math.log(2)
        if dist.is_main:
            bpc = res.get("final_val_bpc")
            extra = [f"final validation bits/char: {bpc:.4f}"] if bpc is not None else []
            finish_run(
                out, model, tok, res, "gpam train lm", mcfg.attention, "training tokens", extra
            )
        return res
    finally:
        cleanup(dist)
