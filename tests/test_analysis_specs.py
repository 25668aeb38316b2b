"""One builder of the analyses' attention settings (``gpam.analysis.stacks.variant_specs``),
used by the gradients, rank-collapse and phase configs alike."""

from __future__ import annotations

import pytest

from gpam.analysis.gradients import GradientsConfig
from gpam.analysis.phase import PhaseConfig
from gpam.analysis.rank_collapse import RankCollapseConfig
from gpam.analysis.stacks import VariantSpec, variant_specs


def test_variant_specs_order_and_product() -> None:
    got = variant_specs(["softmax", "dagpam", "cog"], [0.5, 1], ["linear", "negate"], [None])
    assert got == [
        VariantSpec("softmax"),
        VariantSpec("dagpam", lam_neg=0.5, neg_query="linear"),
        VariantSpec("dagpam", lam_neg=0.5, neg_query="negate"),
        VariantSpec("dagpam", lam_neg=1.0, neg_query="linear"),
        VariantSpec("dagpam", lam_neg=1.0, neg_query="negate"),
        VariantSpec("cog"),
    ]
    assert variant_specs(["softmax"], []) == [VariantSpec("softmax")]  # lambdas unused


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (([], [0.5]), "variants"),
        ((["dagpam"], []), "lam_neg"),
        ((["dagpam"], [0.5], []), "neg_query"),
        ((["flash"], [0.5]), "flash"),
        ((["dagpam"], [0.5], ["square"]), "neg_query"),
        ((["dagpam"], [-1.0]), "lam_neg"),
    ],
)
def test_variant_specs_errors_name_the_field(args: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        variant_specs(*args)


def test_every_analysis_config_builds_its_specs_the_same_way() -> None:
    common = {"variants": ["dagpam", "softmax"], "lam_neg": [0.5, 2.0]}
    want = variant_specs(common["variants"], common["lam_neg"], ["negate"], ["neg_identity"])
    one = {"neg_query": "negate", "neg_init": "neg_identity"}
    assert GradientsConfig(**common, **one).specs() == want
    assert RankCollapseConfig(**common, **one).specs() == want
    many = {"neg_query": ["negate"], "neg_init": ["neg_identity"]}
    assert PhaseConfig(**common, **many).specs() == want
