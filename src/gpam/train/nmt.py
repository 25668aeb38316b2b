"""Train a ``Seq2SeqTransformer`` on aligned sentence-pair files or a HF dataset: :func:`train_nmt`.

Source and target share one tokenizer trained on both sides of the training split.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gpam.data.pairs import PairBatcher, encode_pairs, read_pairs
from gpam.data.tokenizer import PAD_ID, train_tokenizer
from gpam.train.checkpoint import resume_tokenizer
from gpam.train.distributed import DistInfo, cleanup, setup_distributed
from gpam.train.lm import seed_everything
from gpam.train.loop import TrainConfig, Validation, train_loop
from gpam.train.nll import loss_logits, mean_nll, nats_to_ppl
from gpam.train.report import finish_run, params_line
from gpam.train.resume import fingerprint, task_settings


@dataclass
class NMTDataOptions:
    """Where the sentence pairs come from and how they are tokenised and batched."""

    train_src: str | None = None
    train_tgt: str | None = None
    valid_src: str | None = None
    valid_tgt: str | None = None
    hf_dataset: str | None = None
    hf_config: str | None = None
    hf_data_files: Any = None
    src_lang: str = "de"
    tgt_lang: str = "en"
    tokenizer: str = "bpe"
    vocab_size: int | None = None
    min_freq: int = 1
    skip_bad: bool = False
    max_tokens: int = 4096
    max_len: int = 128
    valid_limit: int | None = None


def load_nmt_pairs(d: NMTDataOptions) -> tuple[list, list, list[str]]:
    """(train pairs, validation pairs, notes on skipped pairs)."""
    if d.hf_dataset:
        from gpam.data.hf import load_hf_pairs

        kw = dict(
            src_lang=d.src_lang, tgt_lang=d.tgt_lang, config=d.hf_config, data_files=d.hf_data_files
        )
        tr = load_hf_pairs(d.hf_dataset, split="train", **kw)
        va = load_hf_pairs(d.hf_dataset, split="validation", **kw)
        n = len(tr) + len(va)
        tr = [(s, t) for s, t in tr if s.strip() and t.strip()]
        va = [(s, t) for s, t in va if s.strip() and t.strip()]
        notes = [f"{d.hf_dataset}: {n - len(tr) - len(va)} pairs with an empty side skipped"]
    else:
        if not (d.train_src and d.train_tgt and d.valid_src and d.valid_tgt):
            raise ValueError(
                "give --train-src, --train-tgt, --valid-src and --valid-tgt files "
                "(or --hf-dataset NAME)"
            )
        tr, s1 = read_pairs(d.train_src, d.train_tgt, skip_bad=d.skip_bad)
        va, s2 = read_pairs(d.valid_src, d.valid_tgt, skip_bad=d.skip_bad)
        notes = [s1.summary(), s2.summary()]
    if not tr or not va:
        raise ValueError("no usable training or validation sentence pairs")
    if d.valid_limit:
        va = va[: d.valid_limit]
    return tr, va, notes


def nmt_loss(
    model: nn.Module, b: dict[str, Tensor], label_smoothing: float = 0.0
) -> tuple[Tensor, Tensor]:
    """Label-smoothed cross-entropy of a collated batch ``b`` (``gpam.data.pairs.collate``),
    averaged over its non-padding targets, and their count (a 0-dim tensor on the batch's
    device: counting needs no host sync)."""
    logits = model(b["src"], b["tgt_in"], b["src_padding_mask"], b["tgt_padding_mask"])
    loss = F.cross_entropy(
        loss_logits(logits).reshape(-1, logits.shape[-1]),
        b["tgt_out"].reshape(-1),
        ignore_index=PAD_ID,
        label_smoothing=label_smoothing,
    )
    return loss, (b["tgt_out"] != PAD_ID).sum()


class NMTTask:
    """Length-bucketed training batches, label-smoothed loss and validation loss."""

    def __init__(
        self,
        train: list,
        valid: list,
        d: NMTDataOptions,
        seed: int,
        dist: DistInfo,
        device: torch.device,
        label_smoothing: float,
    ) -> None:
        self.train = PairBatcher(train, d.max_tokens, seed, dist.rank, dist.world_size)
        self.valid = PairBatcher(valid, d.max_tokens, 0)
        self.device, self.ls = device, label_smoothing
        self._epoch, self._batches = -1, []

    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        if epoch != self._epoch:
            self._epoch, self._batches = epoch, self.train.epoch_batches(epoch)
        return self._batches

    def batch(self, pos: dict[str, int]) -> tuple[dict[str, Tensor], dict[str, int]]:
        e, i = pos.get("epoch", 0), pos.get("index", 0)
        batches = self._epoch_batches(e)
        if i >= len(batches):
            e, i = e + 1, 0
            batches = self._epoch_batches(e)
        b = {k: v.to(self.device) for k, v in self.train.get(batches[i]).items()}
        return b, {"epoch": e, "index": i + 1}

    def loss(self, model: nn.Module, b: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        return nmt_loss(model, b, self.ls)

    @torch.no_grad()
    def validate(self, model: nn.Module) -> Validation:
        model.eval()

        def batches():
            for idx in self.valid.epoch_batches(0):
                b = {k: v.to(self.device) for k, v in self.valid.get(idx).items()}
                src, tgt = b["src"], b["tgt_in"]
                yield model(src, tgt, b["src_padding_mask"], b["tgt_padding_mask"]), b["tgt_out"]

        loss = mean_nll(batches(), ignore_index=PAD_ID)
        return Validation(loss, {"perplexity": nats_to_ppl(loss)})


def _ids_tensor(pairs: list[tuple[list[int], list[int]]]) -> Tensor:
    """Every id of ``pairs`` with -1 after each side: one tensor to fingerprint."""
    flat = [i for s, t in pairs for i in (*s, -1, *t, -1)]
    return torch.tensor(flat, dtype=torch.long)


def train_nmt(
    d: NMTDataOptions,
    model_kwargs: dict[str, Any],
    cfg: TrainConfig,
    out: Path,
    device: str = "cpu",
    resume: bool = False,
    quiet: bool = False,
    label_smoothing: float = 0.1,
    on_step: Any = None,
) -> dict[str, Any]:
    """Train a translation model; writes ``out/`` like :func:`gpam.train.lm.train_lm`."""
    from gpam.models import Seq2SeqConfig, Seq2SeqTransformer

    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    dist, dev = setup_distributed(device)
    out = Path(out)
    try:
        seed_everything(cfg.seed)
        tr, va, notes = load_nmt_pairs(d)
        tok = resume_tokenizer(out, resume)
        if tok is None:
            texts = [s for s, _ in tr] + [t for _, t in tr]
            tok = train_tokenizer(d.tokenizer, texts, d.vocab_size, d.min_freq)
        tr_ids, cut1 = encode_pairs(tr, tok, tok, d.max_len)
        va_ids, cut2 = encode_pairs(va, tok, tok, d.max_len)
        notes.append(f"{cut1} training and {cut2} validation pairs cut to max_len={d.max_len}")
        kw = dict(model_kwargs)
        kw.setdefault("max_len", d.max_len + 1)
        mcfg = Seq2SeqConfig(src_vocab_size=tok.vocab_size, **kw)
        model = Seq2SeqTransformer(mcfg, seed=cfg.seed).to(dev)  # paired across variants
        rep = model.parameter_report()
        if dist.is_main:
            print(
                f"gpam train nmt: {mcfg.encoder_attention}/{mcfg.decoder_attention}/"
                f"{mcfg.cross_attention} attention, {params_line(rep)}",
                flush=True,
            )
        task = NMTTask(tr_ids, va_ids, d, cfg.seed, dist, dev, label_smoothing)
        settings = task_settings(
            mcfg.to_dict(),
            asdict(d),
            free_data=("train_src", "train_tgt", "valid_src", "valid_tgt", "hf_data_files"),
            extra={
                "task.label_smoothing": label_smoothing,
                "data.fingerprint": fingerprint(*(_ids_tensor(x) for x in (tr_ids, va_ids))),
            },
        )
        res = train_loop(
            model, task, tok, cfg, out, dist, dev, resume, on_step, quiet, settings=settings
        )
        res.update(
            task="nmt",
            parameters=rep,
            model_config=mcfg.to_dict(),
            data_notes=notes,
            tokenizer=tok.kind,
            vocab_size=tok.vocab_size,
            train_pairs=len(tr_ids),
            valid_pairs=len(va_ids),
            label_smoothing=label_smoothing,
            world_size=dist.world_size,
        )
        if dist.is_main:
            finish_run(out, model, tok, res, "gpam train nmt", mcfg.encoder_attention,
                       "target tokens", [])  # fmt: skip
        return res
    finally:
        cleanup(dist)
