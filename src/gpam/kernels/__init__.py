"""Optional fused kernels (Triton) used by ``gpam.functional`` when available.

``dagpam_fused(q_pos, q_neg, k, v, lam_pos, lam_neg, causal, scale)`` runs daGPAM in one pass
over K/V tiles; ``fused_dagpam_available(q, k, ...)`` says when it applies (CUDA + triton, or the
Triton CPU interpreter with ``TRITON_INTERPRET=1``). Triton itself is imported on first use.
"""

from __future__ import annotations

from gpam.kernels.dagpam_fused import (
    SUPPORTED_HEAD_DIMS,
    dagpam_fused,
    fused_dagpam_available,
    triton_available,
)

__all__ = ["SUPPORTED_HEAD_DIMS", "dagpam_fused", "fused_dagpam_available", "triton_available"]
