"""Seq2SeqTransformer: variants, cached decoding, padding, tying, greedy and beam search."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

import gpam
from gpam.models import Seq2SeqConfig, Seq2SeqTransformer

V = 23
PAD, BOS, EOS = 0, 1, 2


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run fastest (and suffer least from a busy machine) on one thread."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny(**kw: object) -> Seq2SeqTransformer:
    args = {
        "d_model": 32, "n_encoder_layers": 2, "n_decoder_layers": 2, "n_heads": 4,
        "max_len": 64, "dropout": 0.0, **kw,
    }  # fmt: skip
    return Seq2SeqTransformer(Seq2SeqConfig(V, **args)).eval()


def ids(b: int, t: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(3, V, (b, t), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("variant", gpam.VARIANTS)
def test_every_variant_forward_backward(variant: str) -> None:
    model = Seq2SeqTransformer(
        Seq2SeqConfig(
            V, d_model=32, n_encoder_layers=3, n_decoder_layers=3, n_heads=4,
            encoder_attention=variant, decoder_attention=variant, cross_attention=variant,
        )
    ).train()  # fmt: skip
    src, tgt = ids(2, 7), ids(2, 6, seed=2)
    mask = torch.zeros(2, 7, dtype=torch.bool)
    mask[1, 5:] = True
    logits = model(src, tgt[:, :-1], src_padding_mask=mask)
    assert logits.shape == (2, 5, V)
    loss = F.cross_entropy(logits.reshape(-1, V), tgt[:, 1:].reshape(-1))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    kinds = model.layer_variants()
    mid = ["softmax", "cog", "softmax"] if variant == "cog" else [variant] * 3
    assert kinds == {"encoder": mid, "decoder": mid, "cross": mid}
    assert [layer.cross_attn.attention for layer in model.decoder] == mid


def test_attention_kind_chosen_per_kind() -> None:
    model = tiny(encoder_attention="softmax", decoder_attention="dagpam", cross_attention="coda")
    assert [layer.self_attn.attention for layer in model.encoder] == ["softmax"] * 2
    assert [layer.self_attn.attention for layer in model.decoder] == ["dagpam"] * 2
    assert [layer.cross_attn.attention for layer in model.decoder] == ["coda"] * 2
    rep = model.parameter_report()
    assert rep["extra"] == 2 * 4 * 8 * 8  # two decoder self-attention layers with daGPAM


@pytest.mark.parametrize("positions", ["learned", "sinusoidal", "rotary"])
@pytest.mark.parametrize("norm", ["pre", "post"])
def test_cached_decoding_equals_full_decode(positions: str, norm: str) -> None:
    model = tiny(positions=positions, norm=norm)
    src, tgt = ids(2, 6), ids(2, 7, seed=4)
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[0, 4:] = True
    with torch.no_grad():
        full = model(src, tgt, src_padding_mask=mask)
        memory = model.encode(src, mask)
        caches: list = []
        steps = []
        for t in range(tgt.shape[1]):
            out, caches = model.decode(
                tgt[:, t : t + 1], memory if t == 0 else None, mask, kv_caches=caches
            )
            steps.append(out)
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)
    assert caches[0][0].length == tgt.shape[1] and caches[0][1].static


@pytest.mark.parametrize("variant", ["softmax", "dagpam", "cog", "sigmoid"])
def test_padded_batch_equals_unpadded_single(variant: str) -> None:
    model = tiny(encoder_attention=variant, cross_attention=variant, decoder_attention=variant)
    a, b = ids(1, 8, seed=5), ids(1, 5, seed=6)
    src = torch.full((2, 8), PAD)
    src[0], src[1, :5] = a[0], b[0]
    mask = src == PAD
    tgt = ids(2, 4, seed=7)
    with torch.no_grad():
        out = model(src, tgt, src_padding_mask=mask)
        torch.testing.assert_close(out[0:1], model(a, tgt[0:1]), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out[1:2], model(b, tgt[1:2]), atol=1e-5, rtol=1e-5)
        # without the mask the padded row differs: the mask really matters
        assert not torch.allclose(model(src, tgt)[1:2], model(b, tgt[1:2]), atol=1e-4)
        beams = model.beam_search(src, mask, bos_id=BOS, eos_id=EOS, beam_size=3, max_len=6)
        single_a = model.beam_search(a, bos_id=BOS, eos_id=EOS, beam_size=3, max_len=6)
        single_b = model.beam_search(b, bos_id=BOS, eos_id=EOS, beam_size=3, max_len=6)
    assert beams == single_a + single_b


def test_tied_embeddings() -> None:
    none, dec, both = tiny(tie_embeddings="none"), tiny(), tiny(tie_embeddings="all")
    assert none.out_proj.weight is not none.tgt_emb.weight
    assert (
        dec.out_proj.weight is dec.tgt_emb.weight and dec.src_emb.weight is not dec.tgt_emb.weight
    )
    assert both.out_proj.weight is both.tgt_emb.weight is both.src_emb.weight
    n = [sum(p.numel() for p in m.parameters()) for m in (none, dec, both)]
    assert n[0] - n[1] == V * 32 and n[1] - n[2] == V * 32


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_beam_size_one_equals_greedy(norm: str) -> None:
    model = tiny(norm=norm, positions="rotary")
    src = ids(4, 6, seed=8)
    greedy = model.greedy_decode(src, bos_id=BOS, eos_id=EOS, max_len=9)
    beam = model.beam_search(src, bos_id=BOS, eos_id=EOS, beam_size=1, max_len=9)
    assert beam == greedy
    assert all(len(s) <= 9 and EOS not in s for s in greedy)


def _train_fixed_reply_model(reply: list[int], steps: int = 40) -> Seq2SeqTransformer:
    """A tiny real model trained to answer every source with ``reply`` followed by eos."""
    torch.manual_seed(0)
    model = Seq2SeqTransformer(
        Seq2SeqConfig(
            12, d_model=16, n_encoder_layers=1, n_decoder_layers=1, n_heads=2, d_ff=32,
            dropout=0.0, norm="pre", positions="learned", max_len=16,
        )
    )  # fmt: skip
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    gen = torch.Generator().manual_seed(0)
    target = torch.tensor([BOS, *reply, EOS]).expand(8, -1)
    for _ in range(steps):
        src = torch.randint(3, 12, (8, 4), generator=gen)
        logits = model(src, target[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, 12), target[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def test_beam_search_on_trained_tiny_model_stops_at_eos() -> None:
    reply = [5, 9, 4]
    model = _train_fixed_reply_model(reply)
    src = torch.randint(3, 12, (3, 4), generator=torch.Generator().manual_seed(9))
    mask = torch.zeros(3, 4, dtype=torch.bool)
    mask[2, 3:] = True
    for beam_size, style in ((1, "gnmt"), (4, "gnmt"), (3, "simple")):
        out = model.beam_search(
            src, mask, bos_id=BOS, eos_id=EOS, beam_size=beam_size, max_len=12,
            length_penalty=0.6, length_penalty_style=style,
        )  # fmt: skip
        assert out == [reply] * 3  # ended by eos after 4 of the 12 allowed tokens
    # a length budget too short to reach eos cuts the hypotheses at max_len
    assert model.beam_search(src, bos_id=BOS, eos_id=EOS, beam_size=2, max_len=2) == [reply[:2]] * 3


class _MarkovModel(torch.nn.Module):
    """A stand-in decoder whose next-token log-probabilities depend only on the last token."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = table  # (V, V) logits
        self.config = Seq2SeqConfig(table.shape[0], d_model=8, n_heads=2)

    def encode(self, src: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return torch.zeros(src.shape[0], src.shape[1], 1)

    def new_caches(self) -> list:
        return [(gpam.KVCache(), gpam.KVCache(static=True))]

    def decode(self, tgt, memory, mask=None, tgt_mask=None, kv_caches=None):  # noqa: ANN001
        return self.table[tgt[:, -1]][:, None, :], kv_caches


def _best_by_brute_force(table: torch.Tensor, max_len: int) -> tuple[list[int], float]:
    logp = F.log_softmax(table.double(), -1)
    best: tuple[list[int], float] = ([], float("-inf"))
    frontier: list[tuple[list[int], float]] = [([BOS], 0.0)]
    for _ in range(max_len):
        nxt = []
        for seq, s in frontier:
            for tok in range(table.shape[0]):
                score = s + float(logp[seq[-1], tok])
                if tok == EOS:
                    if score > best[1]:
                        best = (seq[1:], score)
                else:
                    nxt.append((seq + [tok], score))
        frontier = nxt
    for seq, s in frontier:  # unfinished at max_len
        if s > best[1]:
            best = (seq[1:], s)
    return best


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_wide_beam_search_finds_the_exact_best_sequence(seed: int) -> None:
    from gpam.models import beam_search

    table = torch.randn(5, 5, generator=torch.Generator().manual_seed(seed)) * 2.0
    table[BOS] = table[BOS] - 3.0 * torch.nn.functional.one_hot(torch.tensor(EOS), 5)
    model = _MarkovModel(table)
    src = torch.zeros(1, 3, dtype=torch.long)
    expected, _ = _best_by_brute_force(table, max_len=4)
    # 4 live tokens and 4 steps: 64 beams hold every prefix, so nothing is pruned
    got = beam_search(model, src, bos_id=BOS, eos_id=EOS, beam_size=64, max_len=4,
                      length_penalty=0.0)  # fmt: skip
    assert got == [expected]
    greedy_first = int(table[BOS].argmax())
    beam1 = beam_search(model, src, bos_id=BOS, eos_id=EOS, beam_size=1, max_len=4)
    assert (beam1[0][:1] or [EOS]) == [greedy_first]


def test_decoding_argument_errors() -> None:
    model = tiny(positions="learned", max_len=10)
    src = ids(1, 4)
    with pytest.raises(ValueError, match="beam_size"):
        model.beam_search(src, bos_id=BOS, eos_id=EOS, beam_size=0)
    with pytest.raises(ValueError, match="eos_id"):
        model.beam_search(src, bos_id=BOS, eos_id=V)
    with pytest.raises(ValueError, match="max_len"):
        model.greedy_decode(src, bos_id=BOS, eos_id=EOS, max_len=11)
    with pytest.raises(ValueError, match="length_penalty_style"):
        model.beam_search(src, bos_id=BOS, eos_id=EOS, length_penalty_style="wu")
    with pytest.raises(ValueError, match="src_padding_mask"):
        model(src, src, src_padding_mask=torch.zeros(1, 3, dtype=torch.bool))


def test_decode_returns_logits_or_a_named_decoder_output() -> None:
    from gpam.models import DecoderOutput

    model = tiny()
    src, tgt = ids(2, 6), ids(2, 3, seed=4)
    with torch.no_grad():
        memory = model.encode(src)
        plain = model.decode(tgt, memory)
        res = model.decode(tgt, memory, kv_caches=[])
    assert isinstance(plain, torch.Tensor) and plain.shape[:2] == (2, 3)
    assert isinstance(res, DecoderOutput) and res._fields == ("logits", "caches")
    torch.testing.assert_close(res.logits, plain)
    assert res.caches[0][0].length == 3 and res.caches[0][1].static
    assert isinstance(model(src, tgt), torch.Tensor)
