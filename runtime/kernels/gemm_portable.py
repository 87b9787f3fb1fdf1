"""Portable int8 linear kernels, plus the pieces every path shares.

Plain Numba loops with int32 accumulators: correct on any CPU. On aarch64
with the dot-product extension LLVM turns the single-reduction s8 x s8 loop
into ``sdot``, so this is also the ARM path (no aarch64 intrinsic is ever
compiled). The row quantizer and the dequant/bias/GELU epilogue live here
and are reused by the x86 paths, so every path rounds exactly alike.
"""

import math

import numpy as np
from numba import njit, prange

from .bits import bits_f32, f32_bits

F32 = np.float32
MR = 4  # rows per tile
NR = 16  # columns per tile (weights are padded to a multiple of this)
SHIFT = 0  # activations stored as plain int8 q
SCRATCH_DTYPE = np.int8

# Largest error of our GELU vs 0.5*y*(1+erf(y/sqrt(2))) evaluated in float64,
# relative to max(1, |y|). Measured max over a dense grid is 2.7e-7 (float32
# rational erf, |erf error| <= 4.5e-7); this is the promise tests check.
GELU_MAX_ERR = 1e-6

_INV_SQRT2 = F32(1.0 / math.sqrt(2.0))
# Odd/even rational erf(x) = x*P(x^2)/Q(x^2) on [-4, 4] (Eigen's float erf).
_A13, _A11, _A9, _A7 = F32(-2.72614225801306e-10), F32(2.77068142495902e-08), F32(-2.10102402082508e-06), F32(-5.69250639462346e-05)
_A5, _A3, _A1 = F32(-7.34990630326855e-04), F32(-2.95459980854025e-03), F32(-1.60960333262415e-02)
_B8, _B6, _B4 = F32(-1.45660718464996e-05), F32(-2.13374055278905e-04), F32(-1.68282697438203e-03)
_B2, _B0 = F32(-7.37332916720468e-03), F32(-1.42647390514189e-02)


# error_model="numpy": no zero-division checks, whose branches would stop
# LLVM from vectorising these loops. Loops index 0-based slices so that no
# negative-index wraparound branch is left either.
JIT_OPTS = dict(cache=True, error_model="numpy")


@njit(inline="always", **JIT_OPTS)
def erf32(x):
    """Branch-free float32 erf, so the epilogue loop vectorises (libm erf does not)."""
    x = x if x < F32(4.0) else F32(4.0)
    x = x if x > F32(-4.0) else F32(-4.0)
    x2 = x * x
    p = _A13 * x2 + _A11
    p = p * x2 + _A9
    p = p * x2 + _A7
    p = p * x2 + _A5
    p = p * x2 + _A3
    p = p * x2 + _A1
    q = _B8 * x2 + _B6
    q = q * x2 + _B4
    q = q * x2 + _B2
    q = q * x2 + _B0
    return x * p / q


@njit(inline="always", **JIT_OPTS)
def gelu32(y):
    return F32(0.5) * y * (F32(1.0) + erf32(y * _INV_SQRT2))


@njit(parallel=True, **JIT_OPTS)
def gelu_inplace(y):
    """y = GELU(y) elementwise, the same float32 GELU as the fused epilogue; y (M, N)."""
    for m in prange(y.shape[0]):
        row = y[m]
        for j in range(row.shape[0]):
            row[j] = gelu32(row[j])


@njit(**JIT_OPTS)
def finish_row(out, m, n0, n1, rowq, sw, wsum, bias, gelu):
    """out[m, n0:n1] holds float32(acc); make it acc*(sa*sw) + (c*wsum + bias), then GELU.

    rowq[0, m] = sa, rowq[1, m] = c: the row was quantized around its centre c,
    so x = q*sa + c and W x = sa*(W q) + c*sum_k W[:, k] (wsum = sw * colsum(q_w)).
    """
    o = out[m, n0:n1]
    s = sw[n0:n1]
    ws = wsum[n0:n1]
    b = bias[n0:n1]
    sa_m = rowq[0, m]
    c_m = rowq[1, m]
    if gelu:
        for j in range(o.shape[0]):
            o[j] = gelu32(o[j] * (sa_m * s[j]) + (c_m * ws[j] + b[j]))
    else:
        for j in range(o.shape[0]):
            o[j] = o[j] * (sa_m * s[j]) + (c_m * ws[j] + b[j])


@njit(inline="always", **JIT_OPTS)
def _order_key(bits):
    """float32 bits (as int32) -> int32 that sorts like the float (an involution)."""
    return bits ^ ((bits >> np.int32(31)) & np.int32(0x7FFFFFFF))


@njit(**JIT_OPTS)
def quantize_row(x, m, dst, base, shift, kpad, in_scale, rowq):
    """Quantize x[m, :] * in_scale around its centre into dst[base:base+kpad] as q + shift.

    xs = x * in_scale; c = (max + min) / 2, r = (max - min) / 2, sa = r / 127,
    q = clip(rint((xs - c) * (127 / r)), -127, 127): the row's whole range maps
    onto 255 levels (what an asymmetric uint8 scheme gets), while q stays a
    symmetric int8 for the int8 kernels. Writes rowq[0, m] = sa, rowq[1, m] = c.
    min/max run over order-preserving integer keys of the float bits, an
    integer reduction that vectorises where float min/max do not. Columns
    K..kpad get ``shift`` (q = 0). Returns False for a row with NaN or Inf.
    A constant row (or r < ~3.7e-37) quantizes to q = 0, sa = 1: x = c exactly.
    """
    K = x.shape[1]
    xr = x[m]
    d = dst[base : base + kpad]
    lo_key = np.int32(0x7FFFFFFF)
    hi_key = np.int32(-0x7FFFFFFF - 1)
    for k in range(K):
        key = _order_key(f32_bits(xr[k] * in_scale[k]))
        lo_key = key if key < lo_key else lo_key
        hi_key = key if key > hi_key else hi_key
    for k in range(K, kpad):
        d[k] = shift
    lo = bits_f32(_order_key(lo_key))
    hi = bits_f32(_order_key(hi_key))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        rowq[0, m] = F32(1.0)
        rowq[1, m] = F32(0.0)
        return False
    c = (hi + lo) * F32(0.5)
    r = (hi - lo) * F32(0.5)
    inv = F32(127.0) / r if r != F32(0.0) else F32(np.inf)
    rowq[1, m] = c
    if inv == F32(np.inf) or not np.isfinite(c):
        for k in range(K):
            d[k] = shift
        rowq[0, m] = F32(1.0)
        return np.isfinite(c)
    for k in range(K):
        v = np.rint((xr[k] * in_scale[k] - c) * inv)
        v = v if v > F32(-127.0) else F32(-127.0)
        v = v if v < F32(127.0) else F32(127.0)
        d[k] = np.int32(v) + shift
    rowq[0, m] = r / F32(127.0)
    return True


@njit(parallel=True, **JIT_OPTS)
def quantize_all(x, dst, rowq, shift, kpad, in_scale):
    """Quantize every row of x into dst (rows of kpad); return #bad rows."""
    M = x.shape[0]
    bad = 0
    for m in prange(M):
        if not quantize_row(x, m, dst, m * kpad, shift, kpad, in_scale, rowq):
            bad += 1
    return bad


def pack(qw):
    """(N, K) int8 -> weights as (Np, K) int8 rows, Np = N padded to NR."""
    N, K = qw.shape
    Np = -(-N // NR) * NR
    w = np.zeros((Np, K), np.int8)
    w[:N] = qw
    return w.reshape(-1), np.zeros(Np, np.int32), K


@njit(**JIT_OPTS)
def _dot(xq, a, w, b, K):
    """int32 dot of K int8 values: one reduction, which LLVM maps to sdot/pmaddwd."""
    xr = xq[a : a + K]
    wr = w[b : b + K]
    acc = np.int32(0)
    for k in range(K):
        # Numba types int32*int32 as int64; truncating keeps acc int32 (exact:
        # |acc| < 2**31 for K < 133,000), which is what lets the loop vectorise.
        acc = np.int32(acc + np.int32(xr[k]) * np.int32(wr[k]))
    return acc


@njit(**JIT_OPTS)
def _tile(xq, w, out, M, N, K, m0, n0):
    """Rows m0..m0+MR x cols n0..n0+NR: out = float32(exact int32 dot)."""
    for m in range(m0, min(m0 + MR, M)):
        for n in range(n0, min(n0 + NR, N)):
            out[m, n] = F32(_dot(xq, m * K, w, n * K, K))


@njit(parallel=True, **JIT_OPTS)
def qlinear_kernel(x, w, corr, sw, wsum, bias, in_scale, out, xq, rowq, Kp, gelu):
    """Fused quantize + GEMM + dequant (+GELU); x (M, K), w (Np*K,), out (M, N).

    xq: int8 scratch (>= M*K,); rowq: f32 scratch (2, >= M). Returns the
    number of rows with NaN/Inf (their output is garbage). Kp == K here.
    """
    M, K = x.shape
    N = out.shape[1]
    bad = quantize_all(x, xq, rowq, 0, K, in_scale)
    n_mt = (M + MR - 1) // MR
    n_nt = (N + NR - 1) // NR
    # Tile t -> (nt, mt), mt fastest: a thread's contiguous chunk reuses a
    # weight panel; even M=1 gives every thread some column tiles.
    for t in prange(n_mt * n_nt):
        nt, mt = t // n_mt, t % n_mt
        m0, n0 = mt * MR, nt * NR
        _tile(xq, w, out, M, N, K, m0, n0)
        for m in range(m0, min(m0 + MR, M)):
            finish_row(out, m, n0, min(n0 + NR, N), rowq, sw, wsum, bias, gelu)
    return bad


@njit(parallel=True, **JIT_OPTS)
def gemm_i32_kernel(xq, w, corr, out, K):
    """Pure int8 GEMM on pre-quantized rows xq (>= M*K,) -> out (M, N) int32."""
    M, N = out.shape
    for t in prange(M * N):
        m, n = t // N, t % N
        out[m, n] = _dot(xq, m * K, w, n * K, K)
