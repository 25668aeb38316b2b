"""Fine-tune a converted causal LM: a minimal AdamW loop and a text-file entry point (CLI)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gpam._io import atomic_write_json
from gpam.hf._compat import require_transformers
from gpam.hf.conversion import CONFIG_KEY, convert, gpam_parameters, lambdas, load_converted

if TYPE_CHECKING:
    from gpam.train.loop import Validation

TRAINABLE = ("all", "gpam")


def _check_ids(name: str, ids: object, seq_len: int) -> Tensor:
    if not isinstance(ids, Tensor) or ids.dim() != 1 or ids.dtype != torch.long:
        raise TypeError(f"{name} must be a 1-D LongTensor of token ids")
    if ids.numel() < seq_len + 1:
        raise ValueError(
            f"{name} has {ids.numel()} tokens; need at least seq_len + 1 = {seq_len + 1}"
        )
    return ids


def _lm_loss(model: nn.Module, batch: Tensor) -> Tensor:
    """Next-token cross-entropy of ``batch (B, T+1)``: inputs ``[:, :-1]``, targets shifted."""
    logits = model(input_ids=batch[:, :-1]).logits
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), batch[:, 1:].reshape(-1))


@torch.no_grad()
def evaluate_lm_loss(
    model: nn.Module,
    ids: Tensor,
    *,
    seq_len: int = 128,
    batch_size: int = 8,
    max_batches: int | None = 20,
) -> float:
    """Mean next-token loss (nats/token) over consecutive non-overlapping windows of ``ids (N,)``
    (full windows only; at most ``max_batches`` batches)."""
    from gpam.train.lm import lm_loss

    _check_ids("ids", ids, seq_len)
    was_training = model.training
    full = (ids.numel() - 1) // seq_len * seq_len  # whole windows only
    cap = None if max_batches is None else max_batches * batch_size * seq_len
    device = next(model.parameters()).device
    loss = lm_loss(
        model, ids[: full + 1], seq_len, batch_size, device, cap, lambda m, x: m(input_ids=x).logits
    )
    model.train(was_training)
    return loss


class HFLMTask:
    """The engine task of a Hugging Face causal LM: random windows of the training ids (the
    ``gpam.data.lm.LMStream`` of ``gpam train lm``), next-token loss, windowed validation."""

    def __init__(
        self,
        train_ids: Tensor,
        val_ids: Tensor,
        seq_len: int,
        batch_size: int,
        seed: int,
        device: torch.device,
        eval_batches: int | None,
    ) -> None:
        from gpam.data.lm import LMStream

        self.stream = LMStream(train_ids, seq_len, batch_size, seed)
        self.val_ids, self.seq_len, self.batch_size = val_ids, seq_len, batch_size
        self.device, self.eval_batches = device, eval_batches

    def batch(self, pos: dict[str, int]) -> tuple[Tensor, dict[str, int]]:
        i = pos.get("batch", 0)
        x, y = self.stream.batch(i)
        return torch.cat([x, y[:, -1:]], dim=1).to(self.device), {"batch": i + 1}

    def loss(self, model: nn.Module, batch: Tensor) -> tuple[Tensor, int]:
        return _lm_loss(model, batch), batch[:, 1:].numel()

    def validate(self, model: nn.Module) -> Validation:
        from gpam.train.loop import Validation

        loss = evaluate_lm_loss(
            model,
            self.val_ids,
            seq_len=self.seq_len,
            batch_size=self.batch_size,
            max_batches=self.eval_batches,
        )
        return Validation(loss)


def finetune(
    model: nn.Module,
    train_ids: Tensor,
    val_ids: Tensor,
    *,
    steps: int = 200,
    batch_size: int = 8,
    seq_len: int = 128,
    lr: float = 3e-4,
    weight_decay: float = 0.0,
    trainable: str = "all",
    eval_batches: int | None = 20,
    seed: int = 0,
    progress: bool = True,
    warmup: int = 0,
    schedule: str = "constant",
    clip: float = 0.0,
    bf16: bool = False,
    time_budget: float | None = None,
    budget_clock: str = "wall",
    accum: int = 1,
) -> dict[str, Any]:
    """Fine-tune a (converted) causal LM on random windows of ``train_ids (N,)`` with the gpam
    training engine (:func:`gpam.train.train_loop`: AdamW with the one weight-decay policy,
    warmup + ``schedule``, clipping, bf16 autocast, time budget; the model stays on its device).

    ``trainable="gpam"`` trains only the parameters ``convert`` added. Returns validation loss
    before and after (nats/token, on ``val_ids``), the training-loss curve, final lambdas, time.
    """
    from gpam.train.distributed import DistInfo
    from gpam.train.loop import TrainConfig, train_loop

    cfg = TrainConfig(
        steps=steps,
        time_budget=time_budget,
        budget_clock=budget_clock,
        lr=lr,
        warmup=warmup,
        schedule=schedule,
        weight_decay=weight_decay,
        clip=clip,
        accum=accum,
        bf16=bf16,
        eval_every=steps,
        log_every=1,
        checkpoint_every=steps,
        seed=seed,
    )
    for name, v in (("batch_size", batch_size), ("seq_len", seq_len)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an int >= 1, got {v!r}")
    if trainable not in TRAINABLE:
        raise ValueError(f"trainable must be one of {TRAINABLE}, got {trainable!r}")
    _check_ids("train_ids", train_ids, seq_len)
    _check_ids("val_ids", val_ids, seq_len)
    keep = set(map(id, gpam_parameters(model))) if trainable == "gpam" else None
    if keep is not None and not keep:
        raise ValueError("trainable='gpam' but the model has no gpam parameters (convert it first)")
    device = next(model.parameters()).device
    task = HFLMTask(train_ids, val_ids, seq_len, batch_size, seed, device, eval_batches)
    before = task.validate(model).loss
    frozen = [p for p in model.parameters() if keep is not None and id(p) not in keep]
    flags = [p.requires_grad for p in frozen]
    for p in frozen:
        p.requires_grad_(False)
    try:
        res = train_loop(model, task, None, cfg, None, DistInfo(), device, quiet=not progress)
    finally:
        for p, f in zip(frozen, flags):
            p.requires_grad_(f)
    model.eval()
    return {
        "val_loss_before": before,
        "val_loss_after": res["final_val_loss"],
        "train_losses": [r["loss"] for r in res["history"] if "loss" in r],
        "steps": res["steps"],
        "stopped": res["stopped"],
        "seconds": res["wall_s"],
        "train_seconds": res["elapsed_s"],
        "lambdas": lambdas(model),
        "train_config": res["train_config"],
    }


def char_tokenizer(text: str, unk_token: str = "[UNK]") -> Any:
    """A character-level ``PreTrainedTokenizerFast`` over the characters of ``text`` (id 0 = unk).

    Saved with ``save_pretrained`` it loads back with ``AutoTokenizer`` (for tiny test models).
    """
    transformers = require_transformers()
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    if not isinstance(text, str) or not text:
        raise ValueError("text must be a non-empty string")
    vocab = {unk_token: 0, **{c: i + 1 for i, c in enumerate(sorted(set(text)))}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=unk_token))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token=unk_token)


def finetune_text(
    model_dir: str | os.PathLike,
    text_file: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    attention: str = "dagpam",
    lam_neg: float = 0.0,
    learnable_lambda: bool = True,
    neg_query: str = "linear",
    lambda_mode: str | None = None,
    neg_init: str = "orthogonal",
    val_fraction: float = 0.1,
    device: str = "cpu",
    skip_bad: bool = False,
    **finetune_kwargs: Any,
) -> dict[str, Any]:
    """Fine-tune the causal LM in ``model_dir`` on a plain-text file; save it to ``out_dir``.

    A model already converted (``config.json`` has a ``gpam`` entry) is loaded with
    :func:`load_converted`; any other is loaded with ``AutoModelForCausalLM`` and converted with
    the given settings. The tokenizer must be in ``model_dir`` (``AutoTokenizer``). The last
    ``val_fraction`` of the token stream is the validation split (the text is read as by
    ``gpam train lm``: UTF-8 checked, ``skip_bad`` skips bad lines; the model's own tokenizer
    encodes it as one string, as it was pretrained). ``device``: where it trains;
    ``finetune_kwargs`` go to :func:`finetune`. Writes the model + tokenizer
    (safetensors) and ``metrics.json`` to ``out_dir``; returns the metrics.
    """
    transformers = require_transformers()
    model_dir, text_file, out_dir = Path(model_dir), Path(text_file), Path(out_dir)
    if not (model_dir / "config.json").is_file():
        raise ValueError(f"model_dir: {str(model_dir)!r} holds no config.json")
    if not text_file.is_file():
        raise ValueError(f"text_file: {str(text_file)!r} is not a file")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    missing = (
        f"model_dir: no tokenizer could be loaded from {str(model_dir)!r}; save it next to the "
        "model with tokenizer.save_pretrained(model_dir)"
    )
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    except (OSError, ValueError) as err:
        raise ValueError(missing) from err
    if not tokenizer.vocab_size:  # transformers builds an empty tokenizer when the files lack
        raise ValueError(missing)
    config = transformers.AutoConfig.from_pretrained(model_dir)
    if isinstance(getattr(config, CONFIG_KEY, None), dict):
        model = load_converted(model_dir)
    else:
        model = transformers.AutoModelForCausalLM.from_pretrained(model_dir)
        convert(
            model,
            attention=attention,
            lam_neg=lam_neg,
            learnable_lambda=learnable_lambda,
            neg_query=neg_query,
            lambda_mode=lambda_mode,
            neg_init=neg_init,
        )
    from gpam.data.text import read_text

    model.to(torch.device(device))
    text, _ = read_text(text_file, skip_bad=skip_bad)
    ids = torch.tensor(tokenizer(text)["input_ids"], dtype=torch.long)
    if ids.numel() == 0:
        raise ValueError(f"text_file: the tokenizer of {str(model_dir)!r} encodes it to 0 tokens")
    cut = int(ids.numel() * (1.0 - val_fraction))
    metrics = finetune(model, ids[:cut], ids[cut:], **finetune_kwargs)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.to("cpu").save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    metrics = {
        **metrics,
        "model_dir": str(model_dir),
        "text_file": str(text_file),
        "gpam": getattr(model.config, CONFIG_KEY),
    }
    atomic_write_json(out_dir / "metrics.json", metrics)
    return metrics


__all__ = ["char_tokenizer", "evaluate_lm_loss", "finetune", "finetune_text"]
