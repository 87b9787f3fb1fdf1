"""Row kernels: fused residual add + LayerNorm, and the embedding sum + LayerNorm.

Each row is done by one thread start to end (statistics in float64), so the
result does not depend on the thread count or on the other rows.
References: ``runtime.reference.add_norm_ref`` and ``embed_ref``.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, inline="always")
def _norm_row(row, gamma, beta, eps, out_row):
    """LayerNorm of one float32 row into ``out_row`` (may alias ``row``)."""
    n = row.shape[0]
    total = 0.0
    for k in range(n):
        total += row[k]
    mean = total / n
    sq = 0.0
    for k in range(n):
        d = row[k] - mean
        sq += d * d
    inv = 1.0 / np.sqrt(sq / n + eps)
    for k in range(n):
        out_row[k] = np.float32((row[k] - mean) * inv * gamma[k] + beta[k])


@njit(cache=True, parallel=True)
def add_norm(x, residual, gamma, beta, eps, out):
    """out = LayerNorm(x + residual); x, residual, out (T, H) float32; out may alias x."""
    T, H = x.shape
    for t in prange(T):
        row = np.empty(H, dtype=np.float32)
        for k in range(H):
            row[k] = x[t, k] + residual[t, k]
        _norm_row(row, gamma, beta, eps, out[t])


@njit(cache=True, parallel=True)
def embed(ids, type_ids, position_ids, word, word_scale, position, token_type, gamma, beta, eps, out):
    """out[t] = LayerNorm(word[ids[t]] * word_scale[ids[t]] + position[p] + token_type[tt]).

    ``word`` is int8 (V, H) with per-row ``word_scale`` (V,), or float32 with
    ``word_scale`` all ones.
    """
    T, H = out.shape
    for t in prange(T):
        i, p, tt = ids[t], position_ids[t], type_ids[t]
        s = word_scale[i]
        row = np.empty(H, dtype=np.float32)
        for k in range(H):
            row[k] = np.float32(word[i, k]) * s + position[p, k] + token_type[tt, k]
        _norm_row(row, gamma, beta, eps, out[t])
