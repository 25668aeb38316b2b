"""The variant registry: one list of names, facts that agree with what the code does."""

from __future__ import annotations

import pytest
import torch

import gpam
import gpam.functional as GF
from gpam.bench.methods import quadratic
from gpam.functional.registry import VARIANT_INFO, check_variant, variant_info
from reference import DEFAULT_KWARGS, make_inputs


def test_one_list_everywhere() -> None:
    assert gpam.VARIANTS == GF.VARIANTS == tuple(VARIANT_INFO)
    assert {"diff2", "centered"} <= set(gpam.VARIANTS)
    from gpam.models.config import attention_variants

    assert attention_variants() == gpam.VARIANTS


@pytest.mark.parametrize("name", list(VARIANT_INFO))
def test_facts_match_the_layer(name: str) -> None:
    info = variant_info(name)
    mha = gpam.MultiheadAttention(16, 4, attention=name)
    assert (mha.extra_parameters() > 0) == info.extra_params
    assert info.negative_query == (name == "dagpam")
    assert info.query_sets in (1, 2)
    assert quadratic(name) == (not info.linear_memory)


@pytest.mark.parametrize("name", [n for n, i in VARIANT_INFO.items() if i.row_sum in ("0", "1")])
def test_row_sum_rule(name: str) -> None:
    inputs = make_inputs(name, 1, 2, 4, 5, 3, generator=torch.Generator().manual_seed(0))
    kw = DEFAULT_KWARGS[name]
    _, w = getattr(GF, f"{name}_attention")(*inputs.values(), return_weights=True, **kw)
    want = float(VARIANT_INFO[name].row_sum)
    torch.testing.assert_close(w.sum(-1), torch.full_like(w.sum(-1), want))


def test_hf_convertible_list_comes_from_the_registry() -> None:
    pytest.importorskip("transformers")
    import gpam.hf

    assert gpam.hf.CONVERTIBLE == GF.HF_CONVERTIBLE
    assert "diff2" not in GF.HF_CONVERTIBLE and "centered" in GF.HF_CONVERTIBLE


def test_unknown_variant() -> None:
    with pytest.raises(ValueError, match="attention must be one of softmax, dagpam"):
        check_variant("linear", "attention")
    with pytest.raises(ValueError, match="name must be one of"):
        variant_info(3)  # type: ignore[arg-type]
