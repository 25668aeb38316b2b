"""gpam.hf: turn pretrained Hugging Face transformers models into daGPAM models.

Optional extra (``pip install gpam[hf]``): ``transformers`` is imported only when one of these
names is used, and a clear ImportError says how to install it when it is missing.

    model = transformers.AutoModelForCausalLM.from_pretrained(...)
    gpam.hf.convert(model, attention="dagpam", lam_neg=0.0)   # outputs unchanged at lam_neg=0
    gpam.hf.finetune(model, train_ids, val_ids, steps=200)    # minimal AdamW loop
    model.save_pretrained(d); gpam.hf.load_converted(d)
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "convert": "gpam.hf.conversion",
    "load_converted": "gpam.hf.conversion",
    "is_converted": "gpam.hf.conversion",
    "gpam_parameters": "gpam.hf.conversion",
    "lambdas": "gpam.hf.conversion",
    "CONVERTIBLE": "gpam.hf.conversion",
    "SUPPORTED_MODEL_TYPES": "gpam.hf.families",
    "ATTN_IMPLEMENTATION": "gpam.hf.attention",
    "register": "gpam.hf.attention",
    "GpamAttentionState": "gpam.hf.params",
    "finetune": "gpam.hf.finetuning",
    "evaluate_lm_loss": "gpam.hf.finetuning",
    "finetune_text": "gpam.hf.finetuning",
    "char_tokenizer": "gpam.hf.finetuning",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'gpam.hf' has no attribute {name!r}")
    from gpam.hf._compat import require_transformers

    require_transformers()
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = sorted(_EXPORTS)
