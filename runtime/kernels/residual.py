"""Row kernels: a residual add (pre-norm encoders, ModernBERT), the mean of each packed sequence's
rows (its heads), and each row's neighbours side by side (DeBERTa-v2's convolution). References:
``runtime.reference.add_ref``, ``mean_pool_ref``, ``neighbours_ref``."""
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


@njit(parallel=True, **JIT_OPTS)
def neighbours(x, seq_offsets, size, out):
    """out (T, size D): row t of a sequence holds its rows t - size//2 .. t + size//2, zeros beyond the
    sequence's ends."""
    D, half = x.shape[1], size // 2
    for b in prange(seq_offsets.shape[0] - 1):
        s, e = seq_offsets[b], seq_offsets[b + 1]
        for t in range(s, e):
            for j in range(size):
                src = t + j - half
                if s <= src < e:
                    for k in range(D):
                        out[t, j * D + k] = x[src, k]
                else:
                    for k in range(D):
                        out[t, j * D + k] = np.float32(0.0)
