"""gpam.models: Transformer language and translation models built on ``gpam.MultiheadAttention``.

``TransformerLM`` (decoder-only) and ``Seq2SeqTransformer`` (encoder-decoder), their configs,
generation / beam search, and ``save_pretrained`` / ``from_pretrained``.
"""

from __future__ import annotations

from .beam import beam_search, greedy_decode, length_normalise
from .config import LMConfig, Seq2SeqConfig
from .io import (
    from_pretrained,
    load_untied_state_dict,
    model_config_dict,
    model_from_config_dict,
    save_pretrained,
    untied_state_dict,
)
from .lm import TransformerLM
from .outputs import DecoderOutput, LMOutput
from .paired import InitScheme, init_rules, paired_init_
from .seq2seq import Seq2SeqTransformer

__all__ = [
    "DecoderOutput",
    "InitScheme",
    "LMConfig",
    "LMOutput",
    "Seq2SeqConfig",
    "Seq2SeqTransformer",
    "TransformerLM",
    "beam_search",
    "from_pretrained",
    "greedy_decode",
    "init_rules",
    "length_normalise",
    "load_untied_state_dict",
    "model_config_dict",
    "model_from_config_dict",
    "paired_init_",
    "save_pretrained",
    "untied_state_dict",
]
