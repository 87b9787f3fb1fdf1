"""Slow, obviously correct NumPy references for the int8 linear kernels.

Tests compare every fast path with these. The float32 operations are the
same, in the same order, as the kernels', so the non-GELU output is expected
to match bit for bit; GELU here is the exact erf form, in float64.
"""

import math

import numpy as np

F32 = np.float32


def quantize_rows_ref(x, input_scale=None):
    """Per row around its centre: x (M, K) f32 -> q (M, K) int8, sa (M,), c (M,) f32.

    xs = x * input_scale; c = (max + min) / 2, r = (max - min) / 2;
    q = clip(rint((xs - c) * (127 / r)), -127, 127), sa = r / 127, so
    xs ~= q * sa + c. A row whose 127/r overflows float32 (constant, or
    r < ~3.7e-37) gets q = 0, sa = 1 (then xs == c exactly).
    """
    x = np.asarray(x, dtype=F32)
    xs = x if input_scale is None else x * np.asarray(input_scale, F32)[None, :]
    q = np.zeros(x.shape, np.int8)
    sa = np.ones(x.shape[0], F32)
    c = np.zeros(x.shape[0], F32)
    for m in range(x.shape[0]):
        if x.shape[1] == 0:
            continue
        lo, hi = xs[m].min(), xs[m].max()
        c[m] = (hi + lo) * F32(0.5)
        r = (hi - lo) * F32(0.5)
        with np.errstate(divide="ignore", over="ignore"):
            inv = F32(127.0) / r  # float32 division
        if not np.isfinite(inv):
            continue
        q[m] = np.clip(np.rint((xs[m] - c[m]) * inv), -127, 127).astype(np.int8)
        sa[m] = r / F32(127.0)
    return q, sa, c


def fake_quantize_rows_ref(x, input_scale=None):
    """What the runtime's activation quantization keeps of x * input_scale: q * sa + c (float32)."""
    q, sa, c = quantize_rows_ref(x, input_scale)
    return q.astype(F32) * sa[:, None] + c[:, None]


def gemm_i32_ref(q, qw):
    """Exact int32 accumulators: q (M, K) int8, qw (N, K) int8 -> (M, N) int32."""
    return q.astype(np.int32) @ qw.astype(np.int32).T


def gelu_ref(y):
    """0.5*y*(1+erf(y/sqrt(2))) in float64, as BERT defines GELU."""
    y = np.asarray(y, dtype=np.float64)
    return 0.5 * y * (1.0 + _erf()(y / math.sqrt(2.0)))


_ERF = None


def _erf():
    """float64 erf over arrays: SciPy's (vectorised, within an ulp or two of math.erf) where
    SciPy is installed, else math.erf element by element (exact, ~100x slower: calibrating a
    MiniLM spent 3-4 s here). Imported on first use only."""
    global _ERF
    if _ERF is None:
        try:
            from scipy.special import erf as _ERF
        except ImportError:
            _ERF = np.vectorize(math.erf, otypes=[np.float64])
    return _ERF


def without_outliers(qw, input_scale, outliers):
    """(qw, input_scale) with the outlier channels' int8 weight columns and input scales zeroed: those
    channels leave the int8 product (copies; the arguments as they are without outliers)."""
    if outliers is None:
        return qw, input_scale
    idx = np.asarray(outliers[0])
    qw = np.array(qw, np.int8)
    qw[:, idx] = 0
    input_scale = np.ones(qw.shape[1], F32) if input_scale is None else np.array(input_scale, F32)
    input_scale[idx] = 0
    return qw, input_scale


def add_outliers_ref(x, y, outliers):
    """y + x[:, idx] @ w_cols.T in float32, one channel after another (the kernel's order)."""
    if outliers is None:
        return y
    idx, cols = outliers
    y = np.array(y, F32)
    x = np.asarray(x, F32)
    for j, k in enumerate(np.asarray(idx)):
        y += x[:, k][:, None] * np.asarray(cols, F32)[:, j][None, :]
    return y


def qlinear_ref(x, qw, scale, bias=None, activation="none", input_scale=None, outliers=None):
    """y = float32(acc) * (sa[m]*sw[n]) + (c[m]*wsum[n] + bias[n]), then optional GELU.

    Returns float32 for activation "none"; float64 for "gelu" (the exact
    value, which the fast float32 GELU must approach within GELU_MAX_ERR).
    ``outliers`` (idx, w_cols (N, k)): those input channels leave the int8
    product and are added in float32 (``add_outliers_ref``) before the GELU.
    """
    if outliers is not None:
        qw, input_scale = without_outliers(qw, input_scale, outliers)
        y = add_outliers_ref(x, qlinear_ref(x, qw, scale, bias, "none", input_scale), outliers)
        return gelu_ref(y) if activation == "gelu" else y
    q, sa, c = quantize_rows_ref(x, input_scale)
    acc = gemm_i32_ref(q, qw)
    scale = np.asarray(scale, F32)
    bias = np.zeros(qw.shape[0], F32) if bias is None else np.asarray(bias, F32)
    wsum = qw.sum(axis=1, dtype=np.int64).astype(F32) * scale
    y = acc.astype(F32) * (sa[:, None] * scale[None, :]) + (c[:, None] * wsum[None, :] + bias[None, :])
    if activation == "gelu":
        return gelu_ref(y)
    if activation != "none":
        raise ValueError(f"activation must be 'none' or 'gelu', got {activation!r}")
    return y


def qlinear_int16_ref(x, qw, scale, bias=None, activation="none", input_scale=None, outliers=None):
    """Reference of ``gemm.qlinear_int16``: the int8 pass plus the pass over its residual (outliers
    as in qlinear_ref, added with the first pass)."""
    x = np.asarray(x, F32)
    qw, input_scale = without_outliers(qw, input_scale, outliers)
    q, sa, c = quantize_rows_ref(x, input_scale)
    xs = x if input_scale is None else x * np.asarray(input_scale, F32)[None, :]
    residual = xs - (q.astype(F32) * sa[:, None] + c[:, None])
    first = add_outliers_ref(x, qlinear_ref(x, qw, scale, bias, "none", input_scale), outliers)
    y = first + qlinear_ref(residual, qw, scale)
    return gelu_ref(y) if activation == "gelu" else y
