"""`gpam analyze trainability`: argparse and one call (the logic is gpam.analysis.trainability).

Building the parser imports no torch (``gpam --help`` stays fast): options left at None take
:class:`gpam.analysis.trainability_config.TrainabilityConfig`'s defaults, which their help
states (``tests/test_analysis_trainability.py`` checks that the two agree).
"""

from __future__ import annotations

import argparse

from gpam._names import NEG_INITS, NEG_QUERIES
from gpam.cli._common import (
    add_alias,
    add_out,
    add_threads,
    comma_floats,
    comma_ints,
    comma_list,
    default_out,
    non_negative_float,
    positive_float,
    positive_int,
    variant_names,
)

#: the defaults the help states (TrainabilityConfig's; checked by a test)
HELP_DEFAULTS = {
    "variants": "softmax,dagpam,centered,cog",
    "lam_neg": "1",
    "neg_query": "linear",
    "skip_weights": "0,0.25,1",
    "qk_gains": "1,4",
    "depths": "8",
    "seeds": "0,1",
    "steps": "80",
    "batch": "16",
    "length": "64",
    "width": "32",
    "heads": "4",
    "lr": "0.003",
    "eval_tokens": "4096",
    "margin": "0.05",
}
#: option dest -> TrainabilityConfig field, where the shared spelling differs
_FIELDS = {"d_model": "width", "n_heads": "heads", "batch_size": "batch"}


def register_trainability(asub: argparse._SubParsersAction) -> None:
    """Add `trainability` to the `gpam analyze` sub-commands."""
    d = HELP_DEFAULTS
    p = asub.add_parser(
        "trainability",
        help="where each attention still learns as the skip around it weakens (the dilemma in "
        "training)",
        description="Trains a character LM with blocks X = a X + SA(rmsnorm(X)), X = X + "
        "MLP(rmsnorm(X)) over skip weight a x qk gain (W_Q, W_K times it at initialisation) x "
        "depth x seed per variant; per grid point the held-out loss against the unigram loss "
        "and against a = 1, the first layer's query-gradient norm, the attention stack's "
        "residual and logit Jacobian at initialisation and after training, where it trains and "
        "the smallest skip weight that does, with the paired difference to softmax.",
    )
    p.add_argument(
        "--variants",
        type=comma_list,
        default=None,
        help=f"comma-separated from {','.join(variant_names())} (default: {d['variants']})",
    )
    p.add_argument(
        "--lam-neg",
        type=comma_floats,
        default=None,
        help=f"daGPAM lam_neg values, affine form (default: {d['lam_neg']})",
    )
    p.add_argument(
        "--neg-query",
        type=comma_list,
        default=None,
        help=f"comma-separated daGPAM negative queries from {','.join(NEG_QUERIES)} "
        f"(default: {d['neg_query']})",
    )
    p.add_argument(
        "--neg-init",
        type=comma_list,
        default=None,
        help=f"comma-separated initialisations of the negative query from {','.join(NEG_INITS)} "
        "(default: the layer's own, orthogonal)",
    )
    p.add_argument(
        "--skip-weights",
        type=comma_floats,
        default=None,
        help="increasing weights a >= 0 of the skip around attention; 1 is a normal pre-norm "
        f"block and the reference (default: {d['skip_weights']})",
    )
    p.add_argument(
        "--qk-gains",
        type=comma_floats,
        default=None,
        help="increasing gains multiplying W_Q, W_K and a separate negative-query projection at "
        f"initialisation (default: {d['qk_gains']})",
    )
    p.add_argument(
        "--depths",
        type=comma_ints,
        default=None,
        help=f"comma-separated block counts (default: {d['depths']})",
    )
    p.add_argument(
        "--seeds",
        type=comma_ints,
        default=None,
        help="comma-separated seeds; cells with the same seed share data order and the shared "
        f"weights (default: {d['seeds']})",
    )
    p.add_argument(
        "--text",
        default=None,
        help="plain-text file for the character LM, last 10%% held out (default: a built-in "
        "generated corpus, no data needed)",
    )
    p.add_argument(
        "--steps", type=positive_int, help=f"AdamW steps per cell (default: {d['steps']})"
    )
    a = p.add_argument(
        "--batch-size", type=positive_int, help=f"sequences per step (default: {d['batch']})"
    )
    add_alias(p, a, "--batch")
    p.add_argument(
        "--length", type=positive_int, help=f"characters per sequence (default: {d['length']})"
    )
    a = p.add_argument("--d-model", type=positive_int, help=f"model width (default: {d['width']})")
    add_alias(p, a, "--width")
    a = p.add_argument(
        "--heads",
        dest="n_heads",
        metavar="HEADS",
        type=positive_int,
        help=f"attention heads (default: {d['heads']})",
    )
    add_alias(p, a, "--n-heads")
    p.add_argument("--lr", type=positive_float, help=f"learning rate (default: {d['lr']})")
    p.add_argument(
        "--eval-tokens",
        type=positive_int,
        help=f"held-out characters the loss is averaged over (default: {d['eval_tokens']})",
    )
    p.add_argument(
        "--margin",
        type=non_negative_float,
        help="a grid point trains when its mean held-out loss is below the unigram loss by more "
        f"than max(std over seeds, margin) nats (default: {d['margin']})",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="a small fixed grid (softmax and daGPAM lam_neg 1, a in {0, 1}, qk gain in {1, 4}, "
        "depth 4, seeds 0,1, 60 steps, width 32); replaces those options",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="reuse finished cells in --out/cells (same settings) and train only the rest",
    )
    add_threads(p, default=1)
    add_out(p)
    p.set_defaults(func=_trainability)


def trainability_kwargs(args: argparse.Namespace) -> dict:
    """The keyword arguments of ``run_trainability`` the parsed options set (None: default)."""
    names = ("variants", "lam_neg", "neg_query", "skip_weights", "qk_gains", "depths", "seeds")
    names += ("text", "steps", "batch_size", "length", "d_model", "n_heads", "lr")
    names += ("eval_tokens", "margin")
    kwargs = {_FIELDS.get(n, n): getattr(args, n) for n in names}
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if args.neg_init is not None:
        kwargs["neg_init"] = args.neg_init
    return kwargs


def _trainability(args: argparse.Namespace) -> int:
    from gpam.analysis.trainability import run_trainability

    out = args.out or default_out("gpam-trainability")
    kwargs = trainability_kwargs(args)
    if args.quick:
        from gpam.analysis.trainability_config import QUICK

        kwargs.update(QUICK)
    result = run_trainability(out, resume=args.resume, threads=args.threads, **kwargs)
    print(
        f"wrote {out}/trainability.json, plots and report.md ({result['timing']['wall_s']:.0f} s)"
    )
    return 0
