"""Decoder-only Transformer language model (nanoGPT-style) with any gpam attention variant."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from gpam.functional._checks import data_checks_enabled
from gpam.nn import KVCache, parameter_report
from gpam.nn.masks import layer_mask

from .config import LMConfig
from .layers import (
    Positions,
    TransformerLayer,
    build_attention,
    cache_length,
    init_weights,
    positions_from_padding,
)
from .outputs import LMOutput
from .paired import InitScheme, paired_init_


class TransformerLM(nn.Module):
    """Causal language model: embeddings -> ``n_layers`` Transformer layers -> vocabulary logits.

    Layer ``i`` uses ``config.variant_for(config.attention, i, n_layers)`` for its causal
    self-attention (so ``attention="cog"`` keeps softmax in the first and last layer by default).
    Pre-LN adds a final LayerNorm before the output projection; post-LN does not need one.

    ``seed``: when given, the weights are drawn by :func:`gpam.models.paired_init_` (one stream
    per parameter name), so models of different variants built with the same seed share every
    common parameter bit for bit; without it construction draws from torch's global stream.
    """

    #: state-dict keys that are aliases of another tensor (saved once, re-tied on load)
    tied_keys: tuple[str, ...]

    def __init__(self, config: LMConfig, *, seed: int | None = None) -> None:
        super().__init__()
        if not isinstance(config, LMConfig):
            raise TypeError(f"config must be an LMConfig, got {type(config).__name__}")
        self.config = config
        c = config
        self.tok_emb = nn.Embedding(c.vocab_size, c.d_model)
        self.positions = Positions(c)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(
            TransformerLayer(c, build_attention(c, c.variant_for(c.attention, i, c.n_layers), i))
            for i in range(c.n_layers)
        )
        self.norm_f = nn.LayerNorm(c.d_model, eps=c.layer_norm_eps) if c.norm == "pre" else None
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        init_weights(self)
        # GPT-2: scale the residual output projections of the MLPs by 1/sqrt(2 n_layers).
        self.init_scheme = InitScheme(residual_std=0.02 / math.sqrt(2 * c.n_layers))
        for block in self.blocks:
            nn.init.normal_(block.mlp.proj.weight, std=self.init_scheme.residual_std)
        self.tied_keys = ()
        if c.tie_embeddings:
            self.lm_head.weight = self.tok_emb.weight
            self.tied_keys = ("lm_head.weight",)
        if seed is not None:
            paired_init_(self, seed)

    @property
    def layer_variants(self) -> list[str]:
        """The attention variant of each layer, in order."""
        c = self.config
        return [c.variant_for(c.attention, i, c.n_layers) for i in range(c.n_layers)]

    def new_caches(self) -> list[KVCache]:
        """Empty per-layer key/value caches for incremental decoding."""
        return [KVCache() for _ in self.blocks]

    def forward(
        self,
        input_ids: Tensor,
        kv_caches: list[KVCache] | None = None,
        *,
        padding_mask: Tensor | None = None,
    ) -> Tensor | LMOutput:
        """``input_ids`` ``(B, T)`` -> logits ``(B, T, V)``.

        With ``kv_caches`` (a list of per-layer ``KVCache``; an empty list or ``None`` entries
        start new ones) the tokens continue the cached sequence: positions start at the cache
        length, and an :class:`~gpam.models.LMOutput` ``(logits, caches)`` is returned (always,
        whenever ``kv_caches`` is given; never otherwise).

        ``padding_mask`` (True = padding) hides padded keys, left or right padding alike: real
        tokens get positions counted from their row's first real token, so a padded row gives
        the logits of the same row unpadded (logits at padded positions are meaningless). It
        covers the whole sequence seen so far: ``(B, cache length + T)``.
        """
        _check_ids("input_ids", input_ids, self.config.vocab_size)
        caches = None
        kv_caches = _checked_caches(
            kv_caches, len(self.blocks), self.new_caches, "one cache per layer"
        )
        if kv_caches is not None:
            caches = [KVCache() if k is None else k for k in kv_caches]
        start = cache_length(caches[0]) if caches else 0
        b, t = input_ids.shape
        positions = None
        if padding_mask is not None:
            _check_mask("padding_mask", padding_mask, (b, start + t))
            positions = positions_from_padding(padding_mask, start)
        x = self.tok_emb(input_ids)
        absolute, rotary = self.positions(start, t, x.device, x.dtype, positions)
        if absolute is not None:
            x = x + absolute
        x = self.drop(x)
        # one mask for every layer: padding and causality merged, validated, dead rows found
        mask = layer_mask(padding_mask, None, True, start, b, t, start + t, x.dtype, x.device)
        for i, block in enumerate(self.blocks):
            x = block(x, self_mask=mask, rotary=rotary, self_cache=caches[i] if caches else None)
        if self.norm_f is not None:
            x = self.norm_f(x)
        logits = self.lm_head(x)
        return logits if caches is None else LMOutput(logits, caches)

    @torch.no_grad()
    def generate(
        self,
        input_ids: Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        *,
        eos_id: int | None = None,
        padding_mask: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Sample ``max_new_tokens`` tokens after the prompt ``input_ids`` ``(B, T)``.

        ``temperature=0`` is greedy (argmax); ``top_k`` keeps the k most likely tokens. Prompts
        of different lengths go in left-padded with ``padding_mask`` ``(B, T)`` (True =
        padding). Returns ``(B, T + n)`` (the prompt followed by the new tokens); with
        ``eos_id`` it stops once every row has produced ``eos_id`` (later tokens of finished
        rows are ``eos_id``).

        Sliding window: each token is predicted from the last ``config.max_len`` tokens at most
        (the context the model is built and trained for), whatever the position encoding, so
        prompt + new tokens may exceed ``max_len``. Decoding uses key/value caches while the
        sequence fits; once it is longer, the window is re-run in full for every new token
        (its positions restart at 0 and its first tokens no longer see the ones before, so no
        cached key/value is valid any more): the result is that of running the model on the
        last ``max_len`` tokens at every step.
        """
        _check_ids("input_ids", input_ids, self.config.vocab_size)
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int):
            raise TypeError(f"max_new_tokens must be an int, got {max_new_tokens!r}")
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        if not temperature >= 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
            raise ValueError(f"top_k must be None or an int >= 1, got {top_k!r}")
        if padding_mask is not None:
            _check_mask("padding_mask", padding_mask, tuple(input_ids.shape))
            if bool(padding_mask[:, -1].any()):
                raise ValueError("padding_mask: prompts must be left-padded (last column real)")
        window = self.config.max_len
        was_training = self.training
        self.eval()
        try:
            out = input_ids
            if max_new_tokens == 0:
                return out
            mask = padding_mask
            logits, caches = self(
                input_ids[:, -window:], kv_caches=[], padding_mask=_last(mask, window)
            )
            done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
            for step in range(max_new_tokens):
                nxt = sample_next(logits[:, -1, :], temperature, top_k, generator)
                if eos_id is not None:
                    nxt = torch.where(done, torch.full_like(nxt, eos_id), nxt)
                    done = done | (nxt == eos_id)
                out = torch.cat([out, nxt[:, None]], dim=1)
                if (eos_id is not None and bool(done.all())) or step == max_new_tokens - 1:
                    break
                if mask is not None:
                    mask = torch.cat([mask, mask.new_zeros(mask.shape[0], 1)], dim=1)
                if out.shape[1] <= window:
                    logits, caches = self(nxt[:, None], kv_caches=caches, padding_mask=mask)
                else:  # past the context: the window slid, so re-run it (see the docstring)
                    logits = self(out[:, -window:], padding_mask=_last(mask, window))
            return out
        finally:
            self.train(was_training)

    def parameter_report(self) -> dict[str, float | int]:
        """Total parameters, extra over the same model with softmax attention, overhead %."""
        return parameter_report(self)


def sample_next(
    logits: Tensor,
    temperature: float,
    top_k: int | None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Next token ids ``(B,)`` from logits ``(B, V)``: argmax if temperature is 0, else sampling."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = F.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _last(mask: Tensor | None, n: int) -> Tensor | None:
    """The last ``n`` columns of a padding mask (None stays None)."""
    return None if mask is None else mask[:, -n:]


def _check_ids(name: str, ids: Tensor, vocab: int) -> None:
    if not isinstance(ids, Tensor):
        raise TypeError(f"{name} must be a LongTensor, got {type(ids).__name__}")
    if ids.dtype not in (torch.long, torch.int32, torch.int64):
        raise TypeError(f"{name} must hold integer token ids, got dtype {ids.dtype}")
    if ids.dim() != 2 or ids.shape[1] == 0:
        raise ValueError(f"{name} must have shape (batch, length>0), got {tuple(ids.shape)}")
    # Range check reads the ids (a device-to-host sync): CPU eager or GPAM_DEBUG_CHECKS=1 only.
    if ids.numel() and data_checks_enabled(ids) and (int(ids.min()) < 0 or int(ids.max()) >= vocab):
        raise ValueError(
            f"{name} holds ids outside [0, {vocab}): {int(ids.min())}..{int(ids.max())}"
        )


def _checked_caches(
    caches: list | None, n_layers: int, new: Callable[[], list], what: str
) -> list | None:
    """``caches`` (``new()`` when empty; None stays None); ValueError unless it holds
    ``n_layers`` entries (one per layer, described by ``what``)."""
    if caches is None:
        return None
    caches = caches or new()
    if len(caches) != n_layers:
        raise ValueError(f"kv_caches must hold {what} ({n_layers}), got {len(caches)}")
    return caches


def _check_mask(name: str, mask: Tensor, shape: tuple[int, ...] | Tensor) -> None:
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        raise TypeError(f"{name} must be a bool tensor (True = padding)")
    shape = tuple(shape.shape) if isinstance(shape, Tensor) else tuple(shape)
    if tuple(mask.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(mask.shape)}")
