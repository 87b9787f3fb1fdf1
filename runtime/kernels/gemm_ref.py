"""Slow, obviously correct NumPy references for the int8 linear kernels.

Tests compare every fast path with these. The float32 operations are the
same, in the same order, as the kernels', so the non-GELU output is expected
to match bit for bit; GELU here is the exact erf form, in float64.
"""

import math

import numpy as np

F32 = np.float32


def quantize_rows_ref(x):
    """Per-row symmetric int8: x (M, K) f32 -> q (M, K) int8, sa (M,) f32.

    A row whose 127/amax overflows float32 (all zeros, or amax < ~3.7e-37)
    gets q = 0, sa = 1.
    """
    x = np.asarray(x, dtype=F32)
    amax = np.abs(x).max(axis=1) if x.shape[1] else np.zeros(x.shape[0], F32)
    q = np.zeros(x.shape, np.int8)
    sa = np.ones(x.shape[0], F32)
    for m in range(x.shape[0]):
        with np.errstate(divide="ignore", over="ignore"):
            inv = F32(127.0) / amax[m]  # float32 division
        if not np.isfinite(inv):  # amax == 0 or < 127/FLT_MAX: a zero row
            continue
        q[m] = np.clip(np.rint(x[m] * inv), -127, 127).astype(np.int8)
        sa[m] = amax[m] / F32(127.0)
    return q, sa


def gemm_i32_ref(q, qw):
    """Exact int32 accumulators: q (M, K) int8, qw (N, K) int8 -> (M, N) int32."""
    return q.astype(np.int32) @ qw.astype(np.int32).T


def gelu_ref(y):
    """0.5*y*(1+erf(y/sqrt(2))) in float64, as BERT defines GELU."""
    y = np.asarray(y, dtype=np.float64)
    erf = np.vectorize(math.erf, otypes=[np.float64])
    return 0.5 * y * (1.0 + erf(y / math.sqrt(2.0)))


def qlinear_ref(x, qw, scale, bias=None, activation="none"):
    """y = float32(acc) * (sa[m]*sw[n]) + bias[n], then optional GELU.

    Returns float32 for activation "none"; float64 for "gelu" (the exact
    value, which the fast float32 GELU must approach within GELU_MAX_ERR).
    """
    q, sa = quantize_rows_ref(x)
    acc = gemm_i32_ref(q, qw)
    if bias is None:
        bias = np.zeros(qw.shape[0], F32)
    y = acc.astype(F32) * (sa[:, None] * np.asarray(scale, F32)[None, :]) + np.asarray(bias, F32)[None, :]
    if activation == "gelu":
        return gelu_ref(y)
    if activation != "none":
        raise ValueError(f"activation must be 'none' or 'gelu', got {activation!r}")
    return y
