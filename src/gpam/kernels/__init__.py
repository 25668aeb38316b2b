"""Optional fused kernels (Triton), opt-in: ``gpam.functional`` uses them with ``GPAM_FUSED=1``.

``dagpam_fused(q_pos, q_neg, k, v, lam_pos, lam_neg, causal, scale)`` runs daGPAM in one pass
over K/V tiles; ``fused_dagpam_available(q, k, ...)`` says when it applies on CUDA (triton,
compute capability >= 8.0); on CPU it runs in Triton's interpreter (``TRITON_INTERPRET=1``, fp32
and fp16). Verified only in that interpreter so far. Triton itself is imported on first use.
"""

from __future__ import annotations

from gpam.kernels.dagpam_fused import (
    SUPPORTED_HEAD_DIMS,
    dagpam_fused,
    fused_dagpam_available,
    triton_available,
)

__all__ = ["SUPPORTED_HEAD_DIMS", "dagpam_fused", "fused_dagpam_available", "triton_available"]
