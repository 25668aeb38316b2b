"""The gradients run's small model and built-in task (self-contained, seeded).

Task (``copy``): a sequence of ``n_tokens`` random symbols from ``1..vocab-1``, a separator 0,
then the same symbols again; the model reads it causally and is scored (cross-entropy) only on
predicting the second copy. Chance level is ``log(vocab - 1)`` nats.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gpam.analysis.explicit import AttentionRecord, explicit_attention
from gpam.analysis.stacks import VariantSpec, make_attention


def copy_batch(
    batch: int, n_tokens: int, vocab: int, generator: torch.Generator
) -> tuple[Tensor, Tensor, Tensor]:
    """``(inputs, targets, loss_mask)``, each (batch, 2 * n_tokens); mask True where scored."""
    sym = torch.randint(1, vocab, (batch, n_tokens), generator=generator)
    sep = torch.zeros(batch, 1, dtype=torch.long)
    seq = torch.cat([sym, sep, sym], dim=1)  # (B, 2n + 1)
    inputs, targets = seq[:, :-1], seq[:, 1:]
    mask = torch.zeros_like(targets, dtype=torch.bool)
    mask[:, n_tokens:] = True  # predictions of the copied symbols
    return inputs, targets, mask


class TinyBlock(nn.Module):
    """Pre-LN block ``H = X + SA(LN(X))``, ``Y = H + MLP(LN(H))`` with a gpam attention layer."""

    def __init__(self, spec: VariantSpec, width: int, heads: int, layer_idx: int):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = make_attention(spec, width, heads, layer_idx=layer_idx, bias=False)
        self.mlp = nn.Sequential(
            nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width)
        )


class TinyLM(nn.Module):
    """Token + position embeddings, ``n_layers`` pre-LN blocks, final LN and a linear head.

    ``forward(ids)`` (B, T) -> logits (B, T, vocab) plus, per layer, a dict with the layer input
    ``x`` (graph tensor, grad retained), the attention input ``a_in`` and output ``a_out``
    (B, T, E) and the :class:`AttentionRecord` of the explicit attention forward.
    """

    def __init__(
        self, spec: VariantSpec, vocab: int, max_len: int, width: int, heads: int, n_layers: int
    ):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.pos = nn.Parameter(torch.randn(max_len, width) * 0.02)
        self.blocks = nn.ModuleList(TinyBlock(spec, width, heads, i) for i in range(n_layers))
        self.ln_f = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab)

    def forward(self, ids: Tensor) -> tuple[Tensor, list[dict]]:
        x = self.embed(ids) + self.pos[: ids.shape[1]]
        records = []
        for blk in self.blocks:
            if x.requires_grad:
                x.retain_grad()
            a_in = blk.ln1(x)
            a_out, rec = explicit_attention(blk.attn, a_in, is_causal=True)
            h = x + a_out
            records.append({"x": x, "a_in": a_in, "a_out": a_out, "rec": rec})
            x = h + blk.mlp(blk.ln2(h))
        return self.head(self.ln_f(x)), records

    def module_forward(self, ids: Tensor) -> Tensor:
        """The same model run through the library modules' own forward (for the equality test)."""
        x = self.embed(ids) + self.pos[: ids.shape[1]]
        for blk in self.blocks:
            h = x + blk.attn(blk.ln1(x), is_causal=True)
            x = h + blk.mlp(blk.ln2(h))
        return self.head(self.ln_f(x))


def record_names(rec: AttentionRecord) -> list[str]:
    """Names of the logit matrices (e.g. ``["S_pos", "S_neg"]``)."""
    return list(rec.logits)
