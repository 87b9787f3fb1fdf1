"""Portable int8 linear kernels, plus the pieces every path shares.

Plain Numba loops with int32 accumulators: correct on any CPU (the path of
aarch64 CPUs without the dot-product extension, such as the Raspberry Pi 4's
A72; those with it take gemm_neon_dot's explicit sdot tile). The row quantizer and the dequant/bias/GELU epilogue live here
and are reused by the x86 paths, so every path rounds exactly alike.
"""

import math

import numpy as np
from . import _jit  # noqa: F401,I001  (Numba with edgebert's settings first)
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

from .bits import bits_f32, f32_bits
from .packing import pack_rows

F32 = np.float32
MR = 4  # rows per tile
NR = 16  # columns per tile (weights are padded to a multiple of this)
SHIFT = 0  # activations stored as plain int8 q

from .gemm import GELU_MAX_ERR  # noqa: F401  (declared with the API; tests read it here too)

_INV_SQRT2 = F32(1.0 / math.sqrt(2.0))
# Odd/even rational erf(x) = x*P(x^2)/Q(x^2) on [-4, 4] (Eigen's float erf).
_A13, _A11, _A9, _A7 = F32(-2.72614225801306e-10), F32(2.77068142495902e-08), F32(-2.10102402082508e-06), F32(-5.69250639462346e-05)
_A5, _A3, _A1 = F32(-7.34990630326855e-04), F32(-2.95459980854025e-03), F32(-1.60960333262415e-02)
_B8, _B6, _B4 = F32(-1.45660718464996e-05), F32(-2.13374055278905e-04), F32(-1.68282697438203e-03)
_B2, _B0 = F32(-7.37332916720468e-03), F32(-1.42647390514189e-02)


def _float_intrinsic(name, nargs, flags):
    """A Numba intrinsic calling the LLVM float32 intrinsic ``llvm.<name>.f32``."""
    f32 = ir.FloatType()

    def typer(typingctx, *args):
        def codegen(context, builder, sig, llargs):
            fn = builder.module.declare_intrinsic(f"llvm.{name}", [f32], ir.FunctionType(f32, [f32] * nargs))
            return builder.call(fn, llargs, fastmath=flags)

        return types.float32(*([types.float32] * nargs)), codegen

    if nargs == 2:
        return intrinsic(lambda typingctx, a, b: typer(typingctx, a, b))
    return intrinsic(lambda typingctx, a, b, c: typer(typingctx, a, b, c))


# max/min of two float32 that are never NaN (nnan: a plain vmaxps/vminps; a
# select on a comparison gives the same value, but LLVM merges two such
# clamps into compare-and-blend chains). fma: a*b + c rounded once, the
# same bits on every target (a hardware FMA wherever one exists).
_max_nonan = _float_intrinsic("maxnum", 2, ("nnan",))
_min_nonan = _float_intrinsic("minnum", 2, ("nnan",))
_fma = _float_intrinsic("fma", 3, ())
_ROUND = F32(1.5 * 2**23)


# error_model="numpy": no zero-division checks, whose branches would stop
# LLVM from vectorising these loops. Loops index 0-based slices so that no
# negative-index wraparound branch is left either.
JIT_OPTS = dict(cache=True, nogil=True, error_model="numpy")


@njit(inline="always", **JIT_OPTS)
def erf32(x):
    """Branch-free float32 erf, so the epilogue loop vectorises (libm erf does not).

    Horner steps are explicit FMAs (one rounding each, the same bits on every
    target); the clamp uses max/min that assume x is not NaN (a NaN GELU
    input gives a NaN output all the same: gelu32 multiplies by y).
    """
    x = _min_nonan(_max_nonan(x, F32(-4.0)), F32(4.0))
    x2 = x * x
    p = _fma(_A13, x2, _A11)
    p = _fma(p, x2, _A9)
    p = _fma(p, x2, _A7)
    p = _fma(p, x2, _A5)
    p = _fma(p, x2, _A3)
    p = _fma(p, x2, _A1)
    q = _fma(_B8, x2, _B6)
    q = _fma(q, x2, _B4)
    q = _fma(q, x2, _B2)
    q = _fma(q, x2, _B0)
    return x * p / q


@njit(inline="always", **JIT_OPTS)
def gelu32(y):
    """0.5*y*(1 + erf(y/sqrt(2))) as h + h*erf with h = y/2 (one FMA)."""
    h = F32(0.5) * y
    return _fma(h, erf32(y * _INV_SQRT2), h)


@njit(parallel=True, **JIT_OPTS)
def gelu_inplace(y):
    """y = GELU(y) elementwise, the same float32 GELU as the fused epilogue; y (M, N)."""
    N = y.shape[1]
    for m in prange(y.shape[0]):
        for j in range(N):
            y[m, j] = gelu32(y[m, j])


@njit(inline="always", **JIT_OPTS)
def _outlier_rows4(x, idx, wo, out, m, j):
    """Rows m..m+3 += channels j..j+3 (x[:, idx[j..j+3]] times rows j..j+3 of wo), in channel order."""
    i0, i1, i2, i3 = idx[j], idx[j + 1], idx[j + 2], idx[j + 3]
    a00, a01, a02, a03 = x[m, i0], x[m, i1], x[m, i2], x[m, i3]
    a10, a11, a12, a13 = x[m + 1, i0], x[m + 1, i1], x[m + 1, i2], x[m + 1, i3]
    a20, a21, a22, a23 = x[m + 2, i0], x[m + 2, i1], x[m + 2, i2], x[m + 2, i3]
    a30, a31, a32, a33 = x[m + 3, i0], x[m + 3, i1], x[m + 3, i2], x[m + 3, i3]
    for n in range(out.shape[1]):
        w0, w1, w2, w3 = wo[j, n], wo[j + 1, n], wo[j + 2, n], wo[j + 3, n]
        out[m, n] = (((out[m, n] + a00 * w0) + a01 * w1) + a02 * w2) + a03 * w3
        out[m + 1, n] = (((out[m + 1, n] + a10 * w0) + a11 * w1) + a12 * w2) + a13 * w3
        out[m + 2, n] = (((out[m + 2, n] + a20 * w0) + a21 * w1) + a22 * w2) + a23 * w3
        out[m + 3, n] = (((out[m + 3, n] + a30 * w0) + a31 * w1) + a32 * w2) + a33 * w3


@njit(parallel=True, **JIT_OPTS)
def outlier_add(x, idx, wo, out, gelu):
    """out += x[:, idx] @ wo, one channel after another in float32 (then GELU if ``gelu``): the
    outlier channels a linear keeps out of its int8 activations (docs/format.md, "Outlier channels").
    x (M, K), idx (k,) int32 in [0, K), wo (k, N), out (M, N). Products and sums round one at a
    time, in channel order, as the reference does (no FMA contraction without fastmath).
    Blocks of 4 rows x 4 channels: each weight vector loaded serves 4 rows, and a row's partial
    sums stay in registers over 4 channels. One row and one channel at a time streamed the
    (k, N) weights from L2 once per row: 15 % of a 128 x 768 x 2304 int8 linear's time at k = 32."""
    M, N = out.shape
    k = idx.shape[0]
    k4 = k - k % 4
    for b in prange((M + 3) // 4):
        m0 = b * 4
        if m0 + 4 <= M:
            for j in range(0, k4, 4):
                _outlier_rows4(x, idx, wo, out, m0, j)
            j_rest = k4
        else:
            j_rest = 0
        for m in range(m0, min(m0 + 4, M)):  # the channels left over; all of them for a short last block
            for j in range(j_rest, k):
                a = x[m, idx[j]]
                for n in range(N):
                    out[m, n] = out[m, n] + a * wo[j, n]
            if gelu:
                for n in range(N):
                    out[m, n] = gelu32(out[m, n])


@njit(_nrt=False, **JIT_OPTS)  # called per tile row: no reference counting of its five arrays per call
def finish_row(out, m, n0, n1, rowq, sw, wsum, bias, gelu):
    """out[m, n0:n1] holds float32(acc); make it acc*(sa*sw) + (c*wsum + bias), then GELU.

    rowq[0, m] = sa, rowq[1, m] = c: the row was quantized around its centre c,
    so x = q*sa + c and W x = sa*(W q) + c*sum_k W[:, k] (wsum = sw * colsum(q_w)).
    The dequant is a plain multiply and add (no FMA contraction: the
    reference rounds each step). Columns are indexed from an unsigned base:
    no slice views (reference counting per call) and no negative-index
    wraparound, so both loops vectorise.
    """
    sa_m = rowq[0, m]
    c_m = rowq[1, m]
    u0 = np.uint64(n0)
    if gelu:
        for j in range(n1 - n0):
            i = u0 + np.uint64(j)
            out[m, i] = gelu32(out[m, i] * (sa_m * sw[i]) + (c_m * wsum[i] + bias[i]))
    else:
        for j in range(n1 - n0):
            i = u0 + np.uint64(j)
            out[m, i] = out[m, i] * (sa_m * sw[i]) + (c_m * wsum[i] + bias[i])


@njit(_nrt=False, **JIT_OPTS)  # no reference counting of out per call (see gemm_avx2._tile)
def gelu_span(out, m, n0, n1):
    """out[m, n0:n1] = GELU(out[m, n0:n1]): for kernels whose epilogue dequantizes in registers."""
    u0 = np.uint64(n0)
    for j in range(n1 - n0):
        i = u0 + np.uint64(j)
        out[m, i] = gelu32(out[m, i])


@njit(inline="always", **JIT_OPTS)
def _order_key(bits):
    """float32 bits (as int32) -> int32 that sorts like the float (an involution).

    Every step is cast back to int32: Numba widens int32 arithmetic to int64,
    which would halve the vector width of the min/max loop.
    """
    sign = np.int32(np.int32(bits >> np.int32(31)) & np.int32(0x7FFFFFFF))
    return np.int32(bits ^ sign)


@njit(inline="always", **JIT_OPTS)
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

    Both loops are branch-free and stay in 32-bit lanes (int32 keys; the
    shift is added in float, exact for |q| <= 127, before one float -> int32
    convert) so that LLVM vectorises them. No fastmath: x * in_scale - c must
    not be contracted into an FMA (the reference rounds the product).
    """
    K = x.shape[1]
    # dst is indexed as dst[b + k] with unsigned b, k and x as x[m, k]: no
    # slice views (their reference counting costs more than a short row) and
    # no negative-index wraparound in the loops.
    b = np.uint64(base)
    lo_key = np.int32(0x7FFFFFFF)
    hi_key = np.int32(-0x7FFFFFFF - 1)
    for k in range(K):
        key = _order_key(f32_bits(x[m, k] * in_scale[k]))
        lo_key = key if key < lo_key else lo_key
        hi_key = key if key > hi_key else hi_key
    for k in range(K, kpad):
        dst[b + np.uint64(k)] = shift
    lo = bits_f32(_order_key(lo_key))
    hi = bits_f32(_order_key(hi_key))
    # One exit (early returns keep Numba from pruning the reference counting
    # of the arguments once inlined into the callers' row loops).
    ok = np.isfinite(lo) and np.isfinite(hi)
    c = (hi + lo) * F32(0.5) if ok else F32(0.0)
    r = (hi - lo) * F32(0.5)
    inv = F32(127.0) / r if r != F32(0.0) else F32(np.inf)
    sa = F32(1.0)
    if ok and inv != F32(np.inf) and np.isfinite(c):
        sa = r / F32(127.0)
        # rint(v) + shift without a round and a convert: for |v| <= 127,
        # v + 1.5*2**23 is rounded (to nearest even, like rint) onto an
        # integer whose low bits are rint(v) (the constant's low 8 bits are
        # zero), so its bits + shift, truncated to 8 bits, are exactly
        # rint(v) + shift.
        for k in range(K):
            # Clip, then round: the same as rounding first (+-127 are
            # integers, rint is monotonic). v is finite here.
            v = (x[m, k] * in_scale[k] - c) * inv
            v = _min_nonan(_max_nonan(v, F32(-127.0)), F32(127.0))
            dst[b + np.uint64(k)] = np.int32(f32_bits(v + _ROUND) + np.int32(shift))
    else:  # NaN/Inf (output is garbage), or a constant row: q = 0, sa = 1, x = c
        ok = ok and np.isfinite(c)
        for k in range(K):
            dst[b + np.uint64(k)] = shift
    rowq[0, m] = sa
    rowq[1, m] = c
    return ok


# Parallel loops run with chunk size 1 (gemm._dynamic: a busy core then delays
# only its own tasks), where every iteration costs about 0.3 us of scheduling.
# One iteration per row or per register tile cost 20-40 % of a MiniLM linear
# (128x384x1152: 75 GOPS at one tile per iteration, 117 at the default static
# chunks, AVX-VNNI, 1 thread), so iterations take blocks of rows or runs of tiles.
ROW_BLOCK = 64  # rows quantized per parallel iteration
TASK_TILES = 32  # register tiles per parallel iteration, at most ...
MIN_TASKS = 8  # ... while the call still has this many iterations (so threads can share it)


@njit(inline="always", **JIT_OPTS)
def tiles_per_task(n_tiles):
    """Consecutive register tiles one parallel iteration computes (see TASK_TILES)."""
    return max(1, min(TASK_TILES, n_tiles // MIN_TASKS))


@njit(parallel=True, **JIT_OPTS)
def quantize_all(x, dst, rowq, shift, kpad, in_scale):
    """Quantize every row of x into dst (rows of kpad); return #bad rows."""
    M = x.shape[0]
    bad = 0
    for blk in prange((M + ROW_BLOCK - 1) // ROW_BLOCK):
        for m in range(blk * ROW_BLOCK, min(blk * ROW_BLOCK + ROW_BLOCK, M)):
            if not quantize_row(x, m, dst, m * kpad, shift, kpad, in_scale, rowq):
                bad += 1
    return bad


@njit(inline="always", **JIT_OPTS)
def residual_row(x, m, q, base, shift, in_scale, rowq, out):
    """out[m] = x[m] * in_scale - (q * sa + c): what the row's quantization (stored in
    q[base:] as q + shift, scales in rowq[:, m]) lost of it. out may alias x."""
    sa = rowq[0, m]
    c = rowq[1, m]
    b = np.uint64(base)
    for k in range(x.shape[1]):
        qk = F32(np.int32(np.int32(q[b + np.uint64(k)]) - np.int32(shift)))
        out[m, k] = x[m, k] * in_scale[k] - (qk * sa + c)


@njit(parallel=True, **JIT_OPTS)
def residual_all(x, in_scale, q, rowq, out):
    """out = x * in_scale - (q * sa + c) per row: what int8 quantization lost; return #bad rows.

    q: int8 scratch (>= M*K,); rowq: (2, >= M). Same quantizer as the GEMM's.
    """
    M, K = x.shape
    bad = 0
    for blk in prange((M + ROW_BLOCK - 1) // ROW_BLOCK):
        for m in range(blk * ROW_BLOCK, min(blk * ROW_BLOCK + ROW_BLOCK, M)):
            if not quantize_row(x, m, q, m * K, 0, K, in_scale, rowq):
                bad += 1
            residual_row(x, m, q, m * K, 0, in_scale, rowq, out)
    return bad


def pack(qw):
    """(N, K) int8 -> weights as (Np, K) int8 rows, Np = N padded to NR."""
    return pack_rows(qw, NR)


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
def qlinear_kernel(x, wp, corr, sw, wsum, bias, in_scale, out, xq, rowq, Kp, gelu):
    """Fused quantize + GEMM + dequant (+GELU); x (M, K), wp (Np*K,), out (M, N).

    xq: int8 scratch (>= M*K,); rowq: f32 scratch (2, >= M). Returns the
    number of rows with NaN/Inf (their output is garbage). Kp == K here.
    """
    M, K = x.shape
    N = out.shape[1]
    bad = quantize_all(x, xq, rowq, 0, K, in_scale)
    n_mt = (M + MR - 1) // MR
    n_nt = (N + NR - 1) // NR
    # Tile t -> (nt, mt), mt fastest: a task's run of tiles reuses a weight
    # panel; even M=1 gives every thread some column tiles.
    n_tiles = n_mt * n_nt
    per = tiles_per_task(n_tiles)
    for task in prange((n_tiles + per - 1) // per):
        for t in range(task * per, min(task * per + per, n_tiles)):
            nt, mt = t // n_mt, t % n_mt
            m0, n0 = mt * MR, nt * NR
            _tile(xq, wp, out, M, N, K, m0, n0)
            for m in range(m0, min(m0 + MR, M)):
                finish_row(out, m, n0, min(n0 + NR, N), rowq, sw, wsum, bias, gelu)
    return bad


@njit(parallel=True, **JIT_OPTS)
def gemm_i32_kernel(xq, wp, corr, out, Kp):
    """Pure int8 GEMM on pre-quantized rows xq (>= M*Kp,) -> out (M, N) int32 (Kp == K here)."""
    M, N = out.shape
    for t in prange(M * N):
        m, n = t // N, t % N
        out[m, n] = _dot(xq, m * Kp, wp, n * Kp, Kp)
