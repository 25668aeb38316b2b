"""`gpam analyze trainability`: argparse and one call (the logic is gpam.analysis.trainability)."""

from __future__ import annotations

import argparse

from gpam.cli._common import (
    add_out,
    comma_floats,
    comma_ints,
    comma_list,
    default_out,
    non_negative_float,
    positive_float,
    positive_int,
)
from gpam.functional import VARIANTS
from gpam.nn.multihead import NEG_INITS, NEG_QUERIES


def register_trainability(asub: argparse._SubParsersAction) -> None:
    """Add `trainability` to the `gpam analyze` sub-commands."""
    from gpam.analysis.trainability_config import TrainabilityConfig

    d = TrainabilityConfig()
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
        default=list(d.variants),
        help=f"comma-separated from {','.join(VARIANTS)} (default: {','.join(d.variants)})",
    )
    p.add_argument(
        "--lam-neg",
        type=comma_floats,
        default=list(d.lam_neg),
        help="daGPAM lam_neg values, affine form (default: 1)",
    )
    p.add_argument(
        "--neg-query",
        type=comma_list,
        default=list(d.neg_query),
        help=f"comma-separated daGPAM negative queries from {','.join(NEG_QUERIES)} "
        "(default: linear)",
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
        default=list(d.skip_weights),
        help="increasing weights a >= 0 of the skip around attention; 1 is a normal pre-norm "
        f"block and the reference (default: {','.join(f'{a:g}' for a in d.skip_weights)})",
    )
    p.add_argument(
        "--qk-gains",
        type=comma_floats,
        default=list(d.qk_gains),
        help="increasing gains multiplying W_Q, W_K and a separate negative-query projection at "
        f"initialisation (default: {','.join(f'{g:g}' for g in d.qk_gains)})",
    )
    p.add_argument(
        "--depths",
        type=comma_ints,
        default=list(d.depths),
        help=f"comma-separated block counts (default: {','.join(map(str, d.depths))})",
    )
    p.add_argument(
        "--seeds",
        type=comma_ints,
        default=list(d.seeds),
        help="comma-separated seeds; cells with the same seed share data order and the shared "
        f"weights (default: {','.join(map(str, d.seeds))})",
    )
    p.add_argument(
        "--text",
        default=None,
        help="plain-text file for the character LM, last 10%% held out (default: a built-in "
        "generated corpus, no data needed)",
    )
    p.add_argument("--steps", type=positive_int, default=d.steps, help="AdamW steps per cell")
    p.add_argument("--batch", type=positive_int, default=d.batch, help="sequences per step")
    p.add_argument("--length", type=positive_int, default=d.length, help="characters per sequence")
    p.add_argument("--width", type=positive_int, default=d.width, help="model width")
    p.add_argument("--heads", type=positive_int, default=d.heads, help="attention heads")
    p.add_argument("--lr", type=positive_float, default=d.lr, help="learning rate")
    p.add_argument(
        "--eval-tokens",
        type=positive_int,
        default=d.eval_tokens,
        help=f"held-out characters the loss is averaged over (default: {d.eval_tokens})",
    )
    p.add_argument(
        "--margin",
        type=non_negative_float,
        default=d.margin,
        help="a grid point trains when its mean held-out loss is below the unigram loss by more "
        f"than max(std over seeds, margin) nats (default: {d.margin:g})",
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
    p.add_argument(
        "--threads",
        type=positive_int,
        default=1,
        help="torch CPU threads; the cells are small, fastest on one (default: 1)",
    )
    add_out(p)
    p.set_defaults(func=_trainability)


def _trainability(args: argparse.Namespace) -> int:
    from gpam.analysis.trainability import run_trainability

    out = args.out or default_out("gpam-trainability")
    names = ("variants", "lam_neg", "neg_query", "skip_weights", "qk_gains", "depths", "seeds")
    names += ("text", "steps", "batch", "length", "width", "heads", "lr", "eval_tokens")
    names += ("margin", "resume", "threads")
    kwargs = {n: getattr(args, n) for n in names}
    kwargs["neg_init"] = args.neg_init or [None]
    if args.quick:
        from gpam.analysis.trainability_config import QUICK

        kwargs.update(QUICK)
    result = run_trainability(out, **kwargs)
    print(
        f"wrote {out}/trainability.json, plots and report.md ({result['timing']['wall_s']:.0f} s)"
    )
    return 0
