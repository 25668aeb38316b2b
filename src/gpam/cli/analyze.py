"""`gpam analyze rank-collapse | faithfulness | gradients | phase`: argparse, one call each."""

from __future__ import annotations

import argparse

from gpam._names import ARCHITECTURES, NEG_INITS, NEG_QUERIES
from gpam.cli._common import (
    add_alias,
    add_out,
    add_seed,
    add_threads,
    comma_floats,
    comma_list,
    default_out,
    non_negative_float,
    positive_float,
    positive_int,
    variant_names,
)
from gpam.cli.analyze_trainability import register_trainability

STACK_ARCHITECTURES = ("attention", "attention_skip", "preln")  # rank-collapse's default
#: the analyses' keyword arguments -> the option dests that hold them (``--d-model`` is the
#: width, ``--heads`` the heads ... as in every other command)
_RENAMED = {"width": "d_model", "heads": "n_heads", "layers": "n_layers", "batch": "batch_size",
            "vocab": "vocab_size"}  # fmt: skip


def _values(args: argparse.Namespace, names: tuple[str, ...]) -> dict:
    """``{name: value}`` of the analysis keyword arguments ``names`` from the parsed options."""
    return {n: getattr(args, _RENAMED.get(n, n)) for n in names}


def _add_shape(
    p: argparse.ArgumentParser, width: int, heads: int, batch: int, batch_help: str
) -> None:
    """``--d-model`` (alias ``--width``), ``--heads``, ``--batch-size`` (alias ``--batch``)."""
    a = p.add_argument("--d-model", type=positive_int, default=width, help="model width d")
    add_alias(p, a, "--width")
    a = p.add_argument(
        "--heads", dest="n_heads", metavar="HEADS", type=positive_int, default=heads, help="heads"
    )
    add_alias(p, a, "--n-heads")
    a = p.add_argument("--batch-size", type=positive_int, default=batch, help=batch_help)
    add_alias(p, a, "--batch")


def _add_variants(p: argparse.ArgumentParser) -> None:
    """``--variants`` (default: every variant) and ``--lam-neg``."""
    p.add_argument(
        "--variants",
        type=comma_list,
        default=list(variant_names()),
        help="comma-separated variants from gpam.VARIANTS",
    )
    p.add_argument(
        "--lam-neg",
        type=comma_floats,
        default=[0.5, 1.0, 2.0],
        help="daGPAM lam_neg values, affine form",
    )


def _add_neg_query(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--neg-query",
        choices=NEG_QUERIES,
        default="linear",
        help="daGPAM's negative query: linear (W Q_pos, default), full (own projection), "
        "negate (-Q_pos), relu_linear (ReLU(Q_pos) W)",
    )
    p.add_argument(
        "--neg-init",
        choices=NEG_INITS,
        default=None,
        help="initialisation of daGPAM's negative query map: orthogonal (the layer's default) "
        "or neg_identity (starts as Q_neg = -Q_pos)",
    )


def _add_stack_options(p: argparse.ArgumentParser, trials: int = 8, batch: int = 4) -> None:
    p.add_argument("--depth", type=positive_int, default=12, help="layers per stack")
    p.add_argument("--length", type=positive_int, default=32, help="tokens per input")
    _add_shape(p, 64, 4, batch, "inputs per trial, averaged")
    p.add_argument(
        "--trials",
        type=positive_int,
        default=trials,
        help="independent draws of weights and inputs; mean and std are over these",
    )
    p.add_argument(
        "--dtype",
        choices=("float64", "float32"),
        default="float64",
        help="precision; float64 keeps round-off far below the measured residuals (default)",
    )
    p.add_argument(
        "--input-scale",
        type=positive_float,
        default=1.0,
        help="standard deviation of the random input tokens",
    )
    add_seed(p)
    add_threads(p, default=1)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `analyze` command to the `gpam` parser."""
    p = sub.add_parser(
        "analyze",
        help="the paper's analyses: rank collapse, lambda sweeps, gradient tracking",
        description="Measure rank collapse, the lambda trade-off and gradient flow per variant.",
    )
    asub = p.add_subparsers(dest="analysis", metavar="ANALYSIS")
    asub.required = True

    rc = asub.add_parser(
        "rank-collapse",
        help="residual vs depth of attention stacks at initialisation",
        description="Stacks of freshly initialised attention layers in three architectures; the "
        "relative residual ||X - 1 x^T|| / ||X|| (Frobenius and Dong et al.'s composite norm) "
        "after each layer, mean and std over trials.",
    )
    _add_variants(rc)
    rc.add_argument(
        "--architectures",
        type=comma_list,
        default=list(STACK_ARCHITECTURES),
        help="comma-separated from attention (pure), attention_norm (SA(rmsnorm(X)), no skip), "
        "attention_skip, preln (default: attention,attention_skip,preln)",
    )
    rc.add_argument(
        "--checkpoint",
        default=None,
        help="folder of a trained model (gpam.models.save_pretrained): measure its own layers "
        "as pure-attention, skip and full-block stacks instead of freshly initialised ones "
        "(default: fresh stacks)",
    )
    _add_neg_query(rc)
    _add_stack_options(rc)
    add_out(rc)
    rc.set_defaults(func=_rank_collapse)

    fa = asub.add_parser(
        "faithfulness",
        help="lambda sweeps of the rank-collapse measure for daGPAM",
        description="(a) lam_neg sweep in the affine form (lam_pos = 1 + lam_neg); (b) lam_pos "
        "sweep with lam_neg fixed and affine=False (rows sum to lam_pos - lam_neg).",
    )
    fa.add_argument(
        "--lam-neg-values",
        type=comma_floats,
        default=[0.0, 0.25, 0.5, 1.0, 2.0, 4.0],
        help="sweep (a) values (default: 0,0.25,0.5,1,2,4)",
    )
    fa.add_argument(
        "--lam-pos-values",
        type=comma_floats,
        default=[1.0, 1.5, 2.0, 3.0, 4.0],
        help="sweep (b) values (default: 1,1.5,2,3,4)",
    )
    fa.add_argument(
        "--fixed-lam-neg",
        type=non_negative_float,
        default=1.0,
        help="lam_neg held fixed in sweep (b) (default: 1)",
    )
    fa.add_argument(
        "--architecture",
        choices=ARCHITECTURES,
        default="attention",
        help="stack architecture (default: attention, i.e. pure attention)",
    )
    _add_neg_query(fa)
    _add_stack_options(fa)
    add_out(fa)
    fa.set_defaults(func=_faithfulness)

    gr = asub.add_parser(
        "gradients",
        help="gradient norms at the attention logits and layer inputs during training",
        description="Trains a small pre-LN model on a built-in copy task per variant and records, "
        "per layer and step, gradient norms w.r.t. the attention logits (both maps for daGPAM) "
        "and the layer input, attention entropy, largest weight per row, the measured residual "
        "shrink and (softmax) Dong et al.'s single-layer bound.",
    )
    _add_variants(gr)
    gr.add_argument("--steps", type=positive_int, default=150, help="training steps")
    gr.add_argument("--n-tokens", type=positive_int, default=8, help="symbols to copy")
    a = gr.add_argument("--vocab-size", type=positive_int, default=16, help="vocabulary size")
    add_alias(gr, a, "--vocab")
    _add_shape(gr, 64, 4, 32, "batch size")
    a = gr.add_argument(
        "--layers", dest="n_layers", metavar="LAYERS", type=positive_int, default=3, help="blocks"
    )
    add_alias(gr, a, "--n-layers")
    gr.add_argument("--lr", type=positive_float, default=3e-3, help="AdamW learning rate")
    gr.add_argument("--record-every", type=positive_int, default=1, help="record every N steps")
    gr.add_argument(
        "--gamma",
        type=positive_float,
        default=1.0,
        help="gamma in Dong et al.'s bound; its exact definition is unconfirmed",
    )
    _add_neg_query(gr)
    add_seed(gr)
    add_threads(gr, default=1)
    add_out(gr)
    gr.set_defaults(func=_gradients)
    _register_phase(asub)
    register_trainability(asub)


def _register_phase(asub: argparse._SubParsersAction) -> None:
    ph = asub.add_parser(
        "phase",
        help="rank collapse vs a saturating map across the logit scale (the paper's dilemma)",
        description="Fresh attention stacks with W_Q, W_K multiplied by each qk gain and W_V, W_O "
        "by each vo gain: final residual, logit-Jacobian norm relative to a uniform row, Lemma "
        "1's region quantity, and per setting the critical gain (smallest qk gain whose final "
        "residual is >= the threshold). With --checkpoint: a trained model's own layers.",
    )
    _add_variants(ph)
    ph.add_argument(
        "--neg-query",
        type=comma_list,
        default=None,
        help=f"comma-separated daGPAM negative queries from {','.join(NEG_QUERIES)} "
        "(default: linear,negate,relu_linear, those of them the layer has)",
    )
    ph.add_argument(
        "--neg-init",
        type=comma_list,
        default=None,
        help=f"comma-separated initialisations of the negative query from {','.join(NEG_INITS)} "
        "(default: the layer's own, orthogonal)",
    )
    ph.add_argument(
        "--architectures",
        type=comma_list,
        default=["attention_norm"],
        help=f"comma-separated from {','.join(ARCHITECTURES)} (default: attention_norm, i.e. "
        "X_{l+1} = SA(rmsnorm(X_l)) without affine, skip or MLP)",
    )
    ph.add_argument(
        "--qk-gains",
        type=comma_floats,
        default=None,
        help="increasing gains multiplying W_Q, W_K and a separate negative-query projection "
        "(default: 2^(k/2) from 0.5 to 16)",
    )
    ph.add_argument(
        "--vo-gains",
        type=comma_floats,
        default=[1.0],
        help="increasing gains multiplying W_V and W_O; several give heat maps (default: 1)",
    )
    ph.add_argument(
        "--threshold",
        type=positive_float,
        default=0.5,
        help="final residual that counts as out of collapse, in (0, 1)",
    )
    ph.add_argument(
        "--gamma",
        type=positive_float,
        default=1.0,
        help="gamma in Lemma 1's region quantity; its exact value is an assumption",
    )
    ph.add_argument(
        "--checkpoint",
        default=None,
        help="folder of a trained model (gpam compare --save-models, gpam train): measure its "
        "own layers (logit scale vs the same model re-initialised, Jacobian, region quantity, "
        "residual of its attention layers as an --architectures stack: attention_norm or "
        "attention) instead of the gain grid (default: the gain grid)",
    )
    _add_stack_options(ph, trials=3, batch=2)
    add_out(ph)
    ph.set_defaults(func=_phase)


def _neg_kwargs(args: argparse.Namespace) -> dict:
    return {"neg_query": args.neg_query, "neg_init": args.neg_init}


def _stack_kwargs(args: argparse.Namespace) -> dict:
    names = ("depth", "length", "width", "heads", "trials", "batch", "dtype", "input_scale", "seed")
    return _values(args, (*names, "threads"))


def _rank_collapse(args: argparse.Namespace) -> int:
    from gpam.analysis import run_rank_collapse

    out = args.out or default_out("gpam-rank-collapse")
    run_rank_collapse(
        out,
        variants=args.variants,
        lam_neg=args.lam_neg,
        architectures=args.architectures,
        checkpoint=args.checkpoint,
        **_neg_kwargs(args),
        **_stack_kwargs(args),
    )
    print(f"wrote {out}/rank_collapse.json, plots and report.md")
    return 0


def _faithfulness(args: argparse.Namespace) -> int:
    from gpam.analysis import run_faithfulness

    out = args.out or default_out("gpam-faithfulness")
    run_faithfulness(
        out,
        lam_neg_values=args.lam_neg_values,
        lam_pos_values=args.lam_pos_values,
        fixed_lam_neg=args.fixed_lam_neg,
        architecture=args.architecture,
        **_neg_kwargs(args),
        **_stack_kwargs(args),
    )
    print(f"wrote {out}/faithfulness.json, plots and report.md")
    return 0


def _gradients(args: argparse.Namespace) -> int:
    from gpam.analysis import run_gradients

    out = args.out or default_out("gpam-gradients")
    names = ("variants", "lam_neg", "steps", "batch", "n_tokens", "vocab", "width", "heads")
    names += ("layers", "lr", "record_every", "gamma", "seed", "threads")
    run_gradients(out, **_neg_kwargs(args), **_values(args, names))
    print(f"wrote {out}/gradients.json, plots and report.md")
    return 0


def _phase(args: argparse.Namespace) -> int:
    import time

    from gpam.analysis import run_phase

    out = args.out or default_out("gpam-phase")
    start = time.perf_counter()
    if args.checkpoint is not None:
        names = ("length", "trials", "batch", "seed", "dtype", "gamma", "threads")
        run_phase(
            out,
            checkpoint=args.checkpoint,
            architecture=args.architectures[0],
            **_values(args, names),
        )
        print(f"wrote {out}/phase_checkpoint.json and report.md")
        return 0
    from gpam.analysis.phase import default_neg_queries, default_qk_gains

    run_phase(
        out,
        variants=args.variants,
        lam_neg=args.lam_neg,
        neg_query=args.neg_query or default_neg_queries(),
        neg_init=args.neg_init or [None],
        architectures=args.architectures,
        qk_gains=args.qk_gains or default_qk_gains(),
        vo_gains=args.vo_gains,
        threshold=args.threshold,
        gamma=args.gamma,
        **_stack_kwargs(args),
    )
    print(f"wrote {out}/phase.json, plots and report.md ({time.perf_counter() - start:.0f} s)")
    return 0
