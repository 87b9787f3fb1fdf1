"""Row kernels of pre-norm encoders (ModernBERT) and their heads: a residual add, and the mean of
each packed sequence's rows. References: ``runtime.reference.add_ref``, ``mean_pool_ref``."""
from __future__ import annotations

import numpy as np
from . import _jit  # noqa: F401,I001  (Numba with edgebert's settings first)
from numba import njit, prange

from .gemm_portable import JIT_OPTS


@njit(parallel=True, **JIT_OPTS)
def add(x, residual, out):
    """out (T, D) = x + residual, float32 (out may alias either input)."""
    for t in prange(x.shape[0]):
        for k in range(x.shape[1]):
            out[t, k] = x[t, k] + residual[t, k]


@njit(parallel=True, **JIT_OPTS)
def mean_pool(x, seq_offsets, out):
    """out (B, D) = the mean of each sequence's rows of packed x (T, D); sums in float64."""
    for b in prange(seq_offsets.shape[0] - 1):
        s, e = seq_offsets[b], seq_offsets[b + 1]
        for k in range(x.shape[1]):
            total = 0.0
            for t in range(s, e):
                total += np.float64(x[t, k])
            out[b, k] = total / max(e - s, 1)
