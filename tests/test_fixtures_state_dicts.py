"""State dicts saved by an earlier version still load and give the same float64 outputs, and the
same seed still gives the same initial weights (``fixtures/make_fixtures.py``).

Outputs are compared to float64 round-off (1e-12): on the CPU that saved them they agree bit for
bit, but another CPU's kernels (an AMD EPYC against the saving machine's) differ in the last
bits (up to 9e-16 seen), while any change of formula, weights or layout moves them by far more.
Initial weights: the fresh ones, perturbed as the maker does, must equal the saved ones to
float32 round-off (1e-6), not bit for bit (the maker's checksum): daGPAM's orthogonal
negative-query map comes from LAPACK's QR, whose float32 bits differ between CPUs (an Intel Xeon
against the saving machine's), while a reordered initialisation draw moves them by O(1).
"""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from gpam.models import load_untied_state_dict

FIXTURES = Path(__file__).parent / "fixtures"
INDEX = json.loads((FIXTURES / "state_dicts" / "index.json").read_text())


def _maker():
    spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURES / "make_fixtures.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


MAKER = _maker()


@pytest.mark.parametrize("name", sorted(INDEX))
def test_fixture_loads_with_same_outputs(name: str) -> None:
    case = INDEX[name]
    torch.manual_seed(0)
    module = MAKER.build(case["kind"], case["kwargs"])
    module = module.double()
    tensors = load_file(str(FIXTURES / "state_dicts" / f"{name}.safetensors"))
    fresh = copy.deepcopy(module)  # same seed, same initial weights (see the module doc)
    MAKER.perturb(fresh)
    state = fresh.state_dict()
    for key, value in tensors.items():
        torch.testing.assert_close(
            state[key], value, atol=1e-6, rtol=1e-6,
            msg=lambda m, k=key: f"{name}/{k}: same seed, different initial weights: {m}",
        )  # fmt: skip
    if case["kind"] in ("lm", "s2s"):
        load_untied_state_dict(module, tensors)
    else:
        module.load_state_dict(tensors, strict=True)
    want = load_file(str(FIXTURES / "state_dicts" / f"{name}.outputs.safetensors"))
    got = MAKER.outputs(case["kind"], module)
    assert sorted(got) == sorted(want)
    for key, value in want.items():
        assert got[key].dtype == torch.float64
        torch.testing.assert_close(
            got[key], value, atol=1e-12, rtol=1e-12, msg=lambda m, k=key: f"{name}/{k}: {m}"
        )


def test_saved_state_dict_keys_are_unchanged() -> None:
    """A fresh module's state-dict keys are exactly the saved ones (no renames)."""
    for name, case in INDEX.items():
        torch.manual_seed(0)
        module = MAKER.build(case["kind"], case["kwargs"])
        tied = set(getattr(module, "tied_keys", ()))
        keys = set(module.state_dict()) - tied
        saved = set(load_file(str(FIXTURES / "state_dicts" / f"{name}.safetensors")))
        assert keys == saved, name
