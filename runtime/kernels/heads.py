"""Row kernels the task heads need beyond the encoder's: a plain LayerNorm.

Reference: ``runtime.reference.layernorm_ref`` (statistics in float64 here too).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True)
def layer_norm(x, gamma, beta, eps, out):
    """out = LayerNorm(x) row by row; x, out (T, H) float32."""
    T, H = x.shape
    for t in prange(T):
        total = 0.0
        for k in range(H):
            total += x[t, k]
        mean = total / H
        sq = 0.0
        for k in range(H):
            d = x[t, k] - mean
            sq += d * d
        inv = 1.0 / np.sqrt(sq / H + eps)
        for k in range(H):
            out[t, k] = np.float32((x[t, k] - mean) * inv * gamma[k] + beta[k])
