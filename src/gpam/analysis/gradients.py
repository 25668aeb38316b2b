"""Gradient tracking during training: logit / input gradient norms, entropy, Dong et al.'s bound.

For each variant a :class:`~gpam.analysis.tiny_model.TinyLM` is trained on the built-in copy task
(same seed, same batches for every variant) by the one training engine,
:func:`gpam.train.train_loop`, whose ``after_backward`` hook takes the records. At every
``record_every``-th step and for every layer it records: the norm of the loss gradient w.r.t.
each attention-logit matrix (both maps for daGPAM and diff) and w.r.t. the layer input, the
attention entropy, the mean over rows of the largest weight, the measured residual shrink of the
attention sub-layer ``||res(SA(X))||_{1,inf} / ||res(X)||_{1,inf}``, and for softmax Dong et
al.'s bound on it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from gpam.analysis.bounds import bound_factor, bound_shrink, shrink
from gpam.analysis.measures import row_entropy, row_max
from gpam.analysis.stacks import VariantSpec, variant_specs
from gpam.analysis.tiny_model import TinyLM, copy_batch
from gpam.functional import VARIANTS
from gpam.train.distributed import DistInfo
from gpam.train.loop import TrainConfig, Validation, train_loop


@dataclass
class GradientsConfig:
    """``gpam analyze gradients`` settings."""

    variants: Sequence[str] = field(default_factory=lambda: list(VARIANTS))
    lam_neg: Sequence[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])
    steps: int = 150
    batch: int = 32
    n_tokens: int = 8
    vocab: int = 16
    width: int = 64
    heads: int = 4
    layers: int = 3
    lr: float = 3e-3
    clip: float = 1.0
    record_every: int = 1
    gamma: float = 1.0
    seed: int = 0
    neg_query: str = "linear"
    neg_init: str | None = None

    def specs(self) -> list[VariantSpec]:
        """One spec per variant, daGPAM once per ``lam_neg`` (affine form)."""
        return variant_specs(self.variants, self.lam_neg, [self.neg_query], [self.neg_init])

    def validate(self) -> None:
        """Raise ValueError naming the first bad field."""
        for name in ("steps", "batch", "n_tokens", "width", "heads", "layers", "record_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not isinstance(self.vocab, int) or self.vocab < 3:
            raise ValueError(f"vocab must be an integer >= 3, got {self.vocab!r}")
        if self.width % self.heads:
            raise ValueError(f"width ({self.width}) must be divisible by heads ({self.heads})")
        for name in ("lr", "clip", "gamma"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        self.specs()

    def train_config(self) -> TrainConfig:
        """The engine settings: AdamW with torch's default betas (0.9, 0.999), no weight decay,
        a constant learning rate from step 1 (no warmup), gradient-norm clipping at ``clip``,
        one micro-batch per step, float32, no validation or logging until the last step."""
        n = self.steps
        return TrainConfig(
            steps=n,
            lr=self.lr,
            warmup=0,
            schedule="constant",
            weight_decay=0.0,
            beta1=0.9,
            beta2=0.999,
            clip=self.clip,
            accum=1,
            bf16=False,
            eval_every=n,
            log_every=n,
            checkpoint_every=n,
            seed=self.seed,
        )


def _norm(t: torch.Tensor | None) -> float | None:
    return None if t is None else float(torch.linalg.vector_norm(t.detach()))


def _append(store: dict, key: str, value: float | None) -> None:
    """Append to ``store[key]``; non-finite values become None (valid JSON)."""
    store.setdefault(key, []).append(value if value is None or math.isfinite(value) else None)


def _record_layer(store: dict, layer: dict, factor: float | None) -> None:
    rec = layer["rec"]
    grads = {n: _norm(t.grad) for n, t in rec.logits.items()}
    for n, g in grads.items():
        _append(store, f"logit_grad_norm_{n}", g)
    vals = [g for g in grads.values() if g is not None]
    _append(store, "logit_grad_norm", math.sqrt(sum(g * g for g in vals)) if vals else None)
    _append(store, "input_grad_norm", _norm(layer["x"].grad))
    with torch.no_grad():
        for n, m in rec.maps.items():
            _append(store, f"entropy_{n}", float(row_entropy(m)))
        _append(store, "max_weight", float(row_max(rec.weights)))
        measured = shrink(layer["a_in"], layer["a_out"])
        _append(store, "shrink_measured", float(measured.mean()))
        if factor is not None:
            bound = bound_shrink(layer["a_in"], factor)
            _append(store, "shrink_bound", float(bound.mean()))
            _append(store, "bound_holds_frac", float((measured <= bound).double().mean()))


class RecordingCopyTask:
    """The analysis's copy task (:func:`~gpam.analysis.tiny_model.copy_batch`) as a
    :class:`gpam.train.Task` for the engine, keeping the last forward's per-layer records
    (``records``) and loss (``last_loss``) for the recording hook.

    Batches are drawn in order from one generator seeded with ``cfg.seed`` (the same batches for
    every variant), so a run cannot resume mid-way: ``batch`` refuses any position other than
    the next one.
    """

    def __init__(self, cfg: GradientsConfig) -> None:
        self.cfg = cfg
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.drawn = 0
        self.records: list[dict] = []
        self.last_loss = math.nan

    def batch(self, pos: dict[str, int]) -> tuple[tuple[Tensor, Tensor, Tensor], dict[str, int]]:
        """The next copy batch ``(inputs, targets, loss_mask)``, each (batch, 2 * n_tokens)."""
        i = pos.get("batch", 0)
        if i != self.drawn:
            raise ValueError(f"pos: the copy task draws batches in order; expected {self.drawn}")
        self.drawn += 1
        c = self.cfg
        return copy_batch(c.batch, c.n_tokens, c.vocab, self.gen), {"batch": i + 1}

    def loss(self, model: nn.Module, batch: tuple[Tensor, Tensor, Tensor]) -> tuple[Tensor, int]:
        """Cross-entropy over the copied half; keeps the layer records of this forward."""
        ids, tgt, mask = batch
        logits, self.records = model(ids)
        loss = F.cross_entropy(logits[mask], tgt[mask])
        self.last_loss = float(loss.detach())
        return loss, int(mask.sum())

    def validate(self, model: nn.Module) -> Validation:
        """No held-out evaluation in this analysis: a NaN loss (the engine's summary is not
        kept)."""
        return Validation(math.nan)


def train_and_record(spec: VariantSpec, cfg: GradientsConfig, progress: tqdm | None = None) -> dict:
    """Train one TinyLM for ``cfg.steps`` steps with :func:`gpam.train.train_loop` and return its
    per-layer records at every ``record_every``-th step (0-based) and at the last step.

    Records are taken once a step's gradients are complete, before clipping and the update.
    ``diverged_at_step`` is the 0-based step at which the engine stopped as ``diverged``: the
    first step whose loss is non-finite (that step is not recorded), or whose loss is finite but
    whose gradient norm is not (recorded; its update is not applied); None otherwise.
    """
    torch.manual_seed(cfg.seed)
    model = TinyLM(spec, cfg.vocab, 2 * cfg.n_tokens, cfg.width, cfg.heads, cfg.layers)
    task = RecordingCopyTask(cfg)
    layers: list[dict] = [{} for _ in range(cfg.layers)]
    steps: list[int] = []
    losses: list[float] = []
    is_softmax = spec.variant == "softmax"

    def record(step: int) -> None:
        s = step - 1  # the engine counts steps from 1
        if not math.isfinite(task.last_loss):
            return
        if s % cfg.record_every == 0 or s == cfg.steps - 1:
            steps.append(s)
            losses.append(task.last_loss)
            for li, (store, layer) in enumerate(zip(layers, task.records)):
                factor = bound_factor(model.blocks[li].attn, cfg.gamma) if is_softmax else None
                _record_layer(store, layer, factor)

    def tick(step: int) -> None:
        if progress is not None:
            progress.update(1)

    res = train_loop(
        model,
        task,
        None,
        cfg.train_config(),
        None,
        DistInfo(),
        torch.device("cpu"),
        on_step=tick,
        quiet=True,
        after_backward=record,
    )
    diverged = res["steps"] - 1 if res["stopped"] == "diverged" else None
    if progress is not None:
        progress.update(cfg.steps - res["steps"])
    return {
        "variant": spec.variant,
        "label": spec.label(),
        "lam_pos": spec.effective_lam_pos(),
        "lam_neg": spec.lam_neg,
        "logit_names": list(task.records[0]["rec"].logits) if task.records else [],
        "steps": steps,
        "loss": losses,
        "diverged_at_step": diverged,
        "layers": layers,
    }


def gradients(cfg: GradientsConfig | None = None, *, show_progress: bool = True) -> dict:
    """Run every variant; returns ``{"config": {...}, "runs": [per-variant record]}``."""
    cfg = cfg or GradientsConfig()
    cfg.validate()
    specs = cfg.specs()
    runs = []
    with tqdm(
        total=len(specs) * cfg.steps, desc="gradients", unit="step", disable=not show_progress
    ) as bar:
        for spec in specs:
            bar.set_postfix_str(spec.label())
            runs.append(train_and_record(spec, cfg, bar))
    config = asdict(cfg)
    config["variants"], config["lam_neg"] = list(cfg.variants), [float(x) for x in cfg.lam_neg]
    config["task"] = (
        f"copy: {cfg.n_tokens} random symbols from 1..{cfg.vocab - 1}, separator 0, the same "
        "symbols again; loss on the copy only"
    )
    config["chance_loss"] = math.log(cfg.vocab - 1)
    config["model"] = "pre-LN blocks, bias-free attention, causal, AdamW, grad-norm clipping"
    config["gamma_note"] = "gamma's exact definition in Dong et al. is unconfirmed; default 1"
    return {"config": config, "runs": runs}
