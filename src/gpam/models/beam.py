"""Greedy decoding and batched beam search for ``gpam.models.Seq2SeqTransformer``.

Beam search keeps ``beam_size`` live hypotheses per source sentence, all sentences of the batch at
once (``B * beam_size`` rows through the decoder). The decoder's self-attention caches are
reordered with ``KVCache.reorder`` after every step; the cross-attention keys/values are computed
once per row (static caches) and never change, since all beams of a sentence share its source.
Each step the ``2 * beam_size`` best extensions are ranked; an extension ending in ``eos`` among
the first ``beam_size`` becomes a finished hypothesis, the best ``beam_size`` others stay live. A
sentence is done when it has ``beam_size`` finished hypotheses (as fairseq does); at ``max_len``
the live ones are finished as they are. The best finished hypothesis by length-normalised score
is returned.

Length normalisation (``length_penalty`` = alpha, length ``n`` counts the generated tokens
including ``eos``): ``"gnmt"`` (default) divides the log-probability by ``((5 + n) / 6) ** alpha``
(Wu et al. 2016, GNMT); ``"simple"`` divides it by ``n ** alpha``. ``alpha = 0`` disables it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import Tensor
from torch.nn import functional as F

from .outputs import DecoderCaches, DecoderOutput

LENGTH_PENALTY_STYLES = ("gnmt", "simple")


class Seq2SeqModel(Protocol):
    """What decoding needs of a ``gpam.models.Seq2SeqTransformer`` (a protocol, so that this
    module does not import the model, which takes these functions as its methods)."""

    config: Any
    training: bool
    encode: Callable[..., Tensor]
    decode: Callable[..., Tensor | DecoderOutput]
    new_caches: Callable[[], DecoderCaches]
    eval: Callable[[], Any]
    train: Callable[[bool], Any]


def length_normalise(score: float, length: int, alpha: float, style: str) -> float:
    """Length-normalised log-probability (see the module docstring)."""
    if alpha == 0:
        return score
    if style == "gnmt":
        return score / (((5.0 + length) / 6.0) ** alpha)
    return score / (max(1, length) ** alpha)


def _resolve_max_len(model: Seq2SeqModel, src_ids: Tensor, max_len: int | None) -> int:
    cfg = model.config
    limit = cfg.max_len if cfg.positions == "learned" else None
    if max_len is None:
        max_len = 2 * src_ids.shape[1] + 10
        return min(max_len, limit) if limit else max_len
    if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1:
        raise ValueError(f"max_len must be an int >= 1, got {max_len!r}")
    if limit and max_len > limit:
        raise ValueError(
            f"max_len={max_len} exceeds the model's max_len={limit} (learned positions)"
        )
    return max_len


def _check_token(name: str, value: int, vocab: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < vocab:
        raise ValueError(f"{name} must be an int in [0, {vocab}), got {value!r}")


@torch.no_grad()
def greedy_decode(
    model: Seq2SeqModel,
    src_ids: Tensor,
    src_padding_mask: Tensor | None = None,
    *,
    bos_id: int,
    eos_id: int,
    max_len: int | None = None,
) -> list[list[int]]:
    """Greedy translation of ``src_ids`` ``(B, S)``: one list of target ids per sentence.

    The lists hold neither ``bos_id`` nor ``eos_id``; at most ``max_len`` tokens are generated
    (``eos`` included; default ``2 * S + 10``).
    """
    vocab = model.config.tgt_vocab_size
    _check_token("bos_id", bos_id, vocab)
    _check_token("eos_id", eos_id, vocab)
    max_len = _resolve_max_len(model, src_ids, max_len)
    was_training = model.training
    model.eval()
    try:
        memory = model.encode(src_ids, src_padding_mask)
        b = src_ids.shape[0]
        last = torch.full((b, 1), bos_id, dtype=torch.long, device=src_ids.device)
        caches = model.new_caches()
        done = torch.zeros(b, dtype=torch.bool, device=src_ids.device)
        out: list[Tensor] = []
        for step in range(max_len):
            logits, caches = model.decode(
                last, memory if step == 0 else None, src_padding_mask, kv_caches=caches
            )
            nxt = logits[:, -1].argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, eos_id), nxt)
            out.append(nxt)
            done = done | (nxt == eos_id)
            if bool(done.all()):
                break
            last = nxt[:, None]
        seqs = torch.stack(out, dim=1).tolist() if out else [[] for _ in range(b)]
        return [s[: s.index(eos_id)] if eos_id in s else s for s in seqs]
    finally:
        model.train(was_training)


@torch.no_grad()
def beam_search(
    model: Seq2SeqModel,
    src_ids: Tensor,
    src_padding_mask: Tensor | None = None,
    *,
    bos_id: int,
    eos_id: int,
    beam_size: int = 4,
    max_len: int | None = None,
    length_penalty: float = 1.0,
    length_penalty_style: str = "gnmt",
) -> list[list[int]]:
    """Batched beam search over ``src_ids`` ``(B, S)``: the best target ids per sentence.

    The lists hold neither ``bos_id`` nor ``eos_id``. ``max_len`` bounds the generated tokens
    (``eos`` included; default ``2 * S + 10``). See the module docstring for the algorithm and
    the two length normalisations.
    """
    vocab = model.config.tgt_vocab_size
    _check_token("bos_id", bos_id, vocab)
    _check_token("eos_id", eos_id, vocab)
    if isinstance(beam_size, bool) or not isinstance(beam_size, int) or beam_size < 1:
        raise ValueError(f"beam_size must be an int >= 1, got {beam_size!r}")
    if not length_penalty >= 0:
        raise ValueError(f"length_penalty must be >= 0, got {length_penalty}")
    if length_penalty_style not in LENGTH_PENALTY_STYLES:
        raise ValueError(
            f"length_penalty_style must be one of {LENGTH_PENALTY_STYLES}, "
            f"got {length_penalty_style!r}"
        )
    max_len = _resolve_max_len(model, src_ids, max_len)
    was_training = model.training
    model.eval()
    try:
        return _beam_search(
            model, src_ids, src_padding_mask, bos_id, eos_id, beam_size, max_len,
            float(length_penalty), length_penalty_style,
        )  # fmt: skip
    finally:
        model.train(was_training)


def _beam_search(
    model: Seq2SeqModel,
    src_ids: Tensor,
    src_padding_mask: Tensor | None,
    bos_id: int,
    eos_id: int,
    k: int,
    max_len: int,
    alpha: float,
    style: str,
) -> list[list[int]]:
    device = src_ids.device
    b = src_ids.shape[0]
    memory = model.encode(src_ids, src_padding_mask).repeat_interleave(k, dim=0)
    mask = None if src_padding_mask is None else src_padding_mask.repeat_interleave(k, dim=0)
    caches = model.new_caches()
    tokens = torch.full((b * k, 1), bos_id, dtype=torch.long, device=device)
    scores = torch.full((b, k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start identical: keep only one alive at first
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(b)]
    done = torch.zeros(b, dtype=torch.bool, device=device)
    base = (torch.arange(b, device=device) * k)[:, None]
    for step in range(max_len):
        logits, caches = model.decode(
            tokens[:, -1:], memory if step == 0 else None, mask, kv_caches=caches
        )
        logp = F.log_softmax(logits[:, -1].float(), dim=-1)  # (B*K, V)
        v = logp.shape[-1]
        cand = (scores.view(b * k, 1) + logp).view(b, k * v)
        n_cand = min(2 * k, k * v)
        top_scores, top_idx = cand.topk(n_cand, dim=1)  # (B, 2K), best first
        beam_of, tok = top_idx // v, top_idx % v
        is_eos = tok == eos_id
        length = step + 1
        # finished hypotheses: eos extensions ranked within the first K candidates
        hits = (is_eos[:, :k] & torch.isfinite(top_scores[:, :k]) & ~done[:, None]).nonzero()
        if hits.numel():
            rows, origins, sc = tokens.tolist(), beam_of.tolist(), top_scores.tolist()
            for bi, j in hits.tolist():
                s = length_normalise(sc[bi][j], length, alpha, style)
                finished[bi].append((s, rows[bi * k + origins[bi][j]][1:]))
            newly = sorted({bi for bi, _ in hits.tolist() if len(finished[bi]) >= k})
            if newly:
                done[newly] = True
                if bool(done.all()):
                    break
        # live hypotheses: the K best non-eos extensions (there are always >= K of them)
        rank = torch.arange(n_cand, device=device).expand(b, n_cand) + is_eos.long() * n_cand
        keep = rank.argsort(dim=1)[:, :k]
        new_scores = top_scores.gather(1, keep)
        new_scores = new_scores.masked_fill(done[:, None], float("-inf"))
        origin = (base + beam_of.gather(1, keep)).view(-1)
        new_tok = tok.gather(1, keep).view(-1, 1)
        tokens = torch.cat([tokens.index_select(0, origin), new_tok], dim=1)
        caches = reorder_self_caches(caches, origin)
        scores = new_scores
        if step == max_len - 1:  # out of length: finish the live hypotheses as they are
            rows = tokens.tolist()
            sc = scores.tolist()
            for bi in (~done).nonzero().view(-1).tolist():
                for j in range(k):
                    if sc[bi][j] != float("-inf"):
                        s = length_normalise(sc[bi][j], length, alpha, style)
                        finished[bi].append((s, rows[bi * k + j][1:]))
    return [max(f, key=lambda x: x[0])[1] if f else [] for f in finished]


def reorder_self_caches(caches: list, index: Tensor) -> list:
    """Reorder the self-attention caches of ``(self, cross)`` pairs along the batch by ``index``.

    Cross-attention caches stay as they are: ``index`` only permutes rows within a sentence's
    block of beams, whose cross keys/values are identical.
    """
    out = []
    for self_cache, cross_cache in caches:
        reordered = self_cache.reorder(index)
        out.append((self_cache if reordered is None else reordered, cross_cache))
    return out
