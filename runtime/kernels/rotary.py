"""Rotary position embeddings (ModernBERT's) on q and k of a packed qkv (T, 3H); v is copied.

Per head of width d, the pair (x[i], x[i + d/2]) at position p turns by the angle
p * inv_freq[i], inv_freq[i] = theta^(-2i/d) (transformers' rotate_half
convention). Angles in float64, so long positions keep their precision; each
token is one thread's, so results do not depend on the thread count.
Reference: ``runtime.reference.rotary_ref``.
"""
from __future__ import annotations

import math

import numpy as np
from . import _jit  # noqa: F401,I001  (Numba with edgebert's settings first)
from numba import njit, prange

from .attention_layout import inverse_frequencies  # noqa: F401  (the binders')
from .gemm_portable import JIT_OPTS


@njit(parallel=True, **JIT_OPTS)
def rotary(qkv, position_ids, num_heads, inv_freq, out):
    """out (T, 3H) = qkv with q and k rotated; position_ids (T,) int; inv_freq (d/2,) float64."""
    T, H3 = qkv.shape
    H = H3 // 3
    d = H // num_heads
    half = d // 2
    for t in prange(T):
        p = np.float64(position_ids[t])
        for i in range(half):
            angle = p * inv_freq[i]
            c, s = math.cos(angle), math.sin(angle)
            for base in range(0, 2 * H, d):  # every head of q, then of k
                lo, hi = np.float64(qkv[t, base + i]), np.float64(qkv[t, base + half + i])
                out[t, base + i] = lo * c - hi * s
                out[t, base + half + i] = hi * c + lo * s
        for j in range(2 * H, H3):
            out[t, j] = qkv[t, j]
