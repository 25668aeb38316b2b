"""``gpam.functional.dagpam.dagpam_pairs``: daGPAM from one (B, 2H, L, D) query of head pairs.

The one-call path (one SDPA call over the 2H heads, each pair on its K/V head through
``enable_gqa``) and the split fallback must both match the float64 reference, outputs and
gradients: GQA, masks with and without a head axis (per-head masks fall back), dead rows,
prepared masks, causal, cross-attention with odd sizes, per-head, per-token and non-affine
lambdas; the one call must be what runs where it is said to apply.
"""

from __future__ import annotations

import math

import pytest
import torch

import gpam.functional.dagpam as dg
from gpam.functional import prepare_mask
from reference import make_inputs, reference

PATHS = {"one_call": frozenset({"cpu"}), "split": frozenset()}


@pytest.fixture(params=list(PATHS))
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(dg, "PAIRS_ONE_CALL_DEVICES", PATHS[request.param])
    return request.param


def _pairs(q_pos: torch.Tensor, q_neg: torch.Tensor) -> torch.Tensor:
    """(B, H, L, D) twice -> (B, 2H, L, D) with head h's queries at heads 2h, 2h + 1."""
    return torch.stack((q_pos, q_neg), 2).flatten(1, 2)


def _mask(kind: str, b: int, h: int, lq: int, lk: int) -> torch.Tensor | None:
    g = torch.Generator().manual_seed(2)
    if kind == "none":
        return None
    keep = torch.rand(b, h if kind == "per_head" else 1, lq, lk, generator=g) < 0.6
    keep[0, 0, 1] = False  # a dead row
    if kind != "float":
        return keep
    return torch.randn(keep.shape, generator=g, dtype=torch.float64).masked_fill(~keep, -1e9)


def _check(out, want, inputs, pairs):  # type: ignore[no-untyped-def]
    torch.testing.assert_close(out, want, atol=1e-12, rtol=1e-10)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, [pairs, inputs["k"], inputs["v"]], grad)
    exp = torch.autograd.grad(want, list(inputs.values()), grad)
    for name, a, w in zip(("pairs", "k", "v"), got, (_pairs(exp[0], exp[1]), exp[2], exp[3])):
        torch.testing.assert_close(a, w, atol=1e-11, rtol=1e-9, msg=name)


@pytest.mark.parametrize("h_kv", [4, 2, 1])
@pytest.mark.parametrize("mask", ["none", "bool", "float", "per_head"])
@pytest.mark.parametrize("causal", [False, True])
def test_pairs_match_float64_reference(path: str, h_kv: int, mask: str, causal: bool) -> None:
    b, h, lq, lk = 2, 4, 5, 7
    x = make_inputs(
        "dagpam", b, h, lq, lk, 8, h_kv=h_kv, generator=torch.Generator().manual_seed(3)
    )
    x = {n: t.requires_grad_() for n, t in x.items()}
    pairs = _pairs(x["q_pos"], x["q_neg"]).detach().requires_grad_()
    m = _mask(mask, b, h, lq, lk)
    lam = torch.tensor([0.1, 0.5, 0.9, 1.3], dtype=torch.float64)
    out = dg.dagpam_pairs(pairs, x["k"], x["v"], lam_neg=lam, attn_mask=m, is_causal=causal)
    ref_mask = m if m is None or m.dtype == torch.bool else m.masked_fill(m <= -8192, -math.inf)
    want, _ = reference("dagpam", x, lam_neg=lam, attn_mask=ref_mask, is_causal=causal)
    _check(out, want, x, pairs)


@pytest.mark.parametrize("kw", [
    {"lam_pos": 1.7, "lam_neg": 0.4, "affine": False},
    {"lam_neg": "token"},
    {"lam_neg": 0.0},
    {"lam_neg": 0.3, "scale": 0.21},
])  # fmt: skip
def test_pairs_lambdas_and_cross_attention_odd_sizes(path: str, kw: dict) -> None:
    b, h, lq, lk, d = 3, 3, 5, 11, 7  # cross-attention: Lq != Lk, odd sizes
    x = make_inputs("dagpam", b, h, lq, lk, d, h_kv=1, generator=torch.Generator().manual_seed(4))
    x = {n: t.requires_grad_() for n, t in x.items()}
    if kw.get("lam_neg") == "token":
        g = torch.Generator().manual_seed(1)
        kw = {"lam_neg": torch.rand(b, h, lq, 1, dtype=torch.float64, generator=g)}
    pairs = _pairs(x["q_pos"], x["q_neg"]).detach().requires_grad_()
    pad = torch.ones(b, 1, 1, lk, dtype=torch.bool)
    pad[1, ..., 8:] = False
    out = dg.dagpam_pairs(pairs, x["k"], x["v"], attn_mask=pad, **kw)
    want, _ = reference("dagpam", x, attn_mask=pad, **kw)
    _check(out, want, x, pairs)


def test_pairs_with_a_prepared_mask(path: str) -> None:
    b, h, length = 2, 4, 6
    x = make_inputs("dagpam", b, h, length, length, 8, h_kv=2)
    pairs = _pairs(x["q_pos"], x["q_neg"])
    pad = torch.zeros(b, length, dtype=torch.bool)
    pad[0, :2] = True  # left padding: query rows 0-1 of row 0 see no key (dead)
    keep = ~pad[:, None, None, :]
    pm = prepare_mask(keep, True, b, length, length, dtype=torch.float64, device=pairs.device)
    out = dg.dagpam_pairs(pairs, x["k"], x["v"], lam_neg=0.4, attn_mask=pm)
    want = dg.dagpam_attention(*x.values(), lam_neg=0.4, attn_mask=pm)
    torch.testing.assert_close(out, want, atol=1e-12, rtol=1e-10)
    assert out[0, :, :2].abs().max() == 0  # dead rows: zero output


def test_gradcheck_one_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dg, "PAIRS_ONE_CALL_DEVICES", PATHS["one_call"])
    g = torch.Generator().manual_seed(5)
    pairs = torch.randn(1, 4, 3, 4, dtype=torch.float64, generator=g, requires_grad=True)
    k = torch.randn(1, 1, 5, 4, dtype=torch.float64, generator=g, requires_grad=True)
    v = torch.randn(1, 1, 5, 3, dtype=torch.float64, generator=g, requires_grad=True)
    lam = torch.tensor([0.2, 0.7], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda p, k, v, lam: dg.dagpam_pairs(p, k, v, lam_neg=lam, is_causal=True),
        (pairs, k, v, lam),
    )


class _Calls(torch.overrides.TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.heads: list[int] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        if func is torch.nn.functional.scaled_dot_product_attention:
            self.heads.append(args[0].shape[1])
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize(
    ("case", "calls"),
    [("plain", [8]), ("per_head_mask", [4, 4]), ("dropout", [4, 4]), ("weights", []),
     ("row_grad", [4, 4]), ("row", [4, 4]), ("row_step", []), ("row_bf16_fold", [4])],
)  # fmt: skip
def test_one_call_runs_where_it_applies(case: str, calls: list[int]) -> None:
    """CPU default: one SDPA call over 8 heads; a per-head mask, dropout (its draws stay two
    calls') and explicit weights take the split path, and so does a single query row (decoding),
    which gets ``dagpam_attention``'s row paths: two calls (with grad, or small), the
    weights-first step (float32 from 1152 scores: no SDPA call) or the fold (bf16 from 2048 key
    rows: one call over two rows of 4 heads)."""
    assert frozenset({"cpu"}) == dg.PAIRS_ONE_CALL_DEVICES
    row = case.startswith("row")  # (B, 8, 1, 8) pairs, made in one buffer as the layer does
    b, lq, lk = (64, 1, 40) if case in ("row_step", "row_bf16_fold") else (2, 1 if row else 5, 5)
    dtype = torch.bfloat16 if case == "row_bf16_fold" else torch.float32
    g = torch.Generator().manual_seed(6)
    pairs = torch.randn(b, 8, lq, 8, generator=g).to(dtype).requires_grad_(case == "row_grad")
    k, v = torch.randn(2, b, 2, lk, 8, generator=g).to(dtype).unbind(0)
    kw: dict = {"lam_neg": 0.3}
    if case == "per_head_mask":
        kw["attn_mask"] = torch.rand(b, 4, lq, lk, generator=g) < 0.8
    kw["dropout_p"] = 0.1 if case == "dropout" else 0.0
    kw["return_weights"] = case == "weights"
    with _Calls() as seen:
        out = dg.dagpam_pairs(pairs, k, v, **kw)
    assert seen.heads == calls
    if row:  # every path gives the same values
        q_pos, q_neg = pairs.unflatten(1, (-1, 2)).unbind(2)
        with torch.no_grad():
            want, _ = reference("dagpam", {
                "q_pos": q_pos.double(), "q_neg": q_neg.double(), "k": k.double(),
                "v": v.double()}, lam_neg=0.3)  # fmt: skip
        tol = 2e-2 if dtype == torch.bfloat16 else 1e-5
        torch.testing.assert_close(out.double(), want, atol=tol, rtol=tol)


def test_pairs_errors_name_the_argument() -> None:
    k = v = torch.randn(1, 2, 4, 8)
    with pytest.raises(ValueError, match="q_pairs must hold 2H heads"):
        dg.dagpam_pairs(torch.randn(1, 3, 4, 8), k, v)
    with pytest.raises(ValueError, match="q_pairs must be 4-D"):
        dg.dagpam_pairs(torch.randn(2, 4, 8), k, v)
    with pytest.raises(ValueError, match=r"q_pairs' heads \(3\) must be a multiple of k's"):
        dg.dagpam_pairs(torch.randn(1, 6, 4, 8), k, v)
    with pytest.raises(ValueError, match="lam_neg"):
        dg.dagpam_pairs(torch.randn(1, 4, 4, 8), k, v, lam_neg=-0.1)
