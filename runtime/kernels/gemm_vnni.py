"""AVX-512 VNNI int8 linear kernels: explicit ``vpdpbusd`` over a 4x64 tile.

Import (and so compile) this module only on a CPU with avx512f/bw + vnni:
an intrinsic compiled for a CPU that lacks it aborts the process.

``vpdpbusd`` multiplies unsigned by signed bytes, so activations are stored
as u8 = q + 128 and the GEMM subtracts 128 * colsum(w), precomputed at pack
time. Weights are packed ``[Np/16][Kp/4][16][4]``: one 64-byte vector holds
4 consecutive k of 16 columns, so the inner loop is 4 vector loads,
4 broadcasts and 16 ``vpdpbusd`` into 16 zmm accumulators, no spills.
"""

import numpy as np
from . import _jit  # noqa: F401,I001  (Numba with edgebert's settings first)
from llvmlite import ir
from numba import njit, prange
from numba.extending import intrinsic

from .gemm_portable import JIT_OPTS, finish_row, quantize_all, tiles_per_task
from .packing import pack_k4_blocks
from .simd import I32X16, declare_intrinsic, make_ops

MR = 4  # rows per register tile
NR = 64  # columns per register tile (4 zmm of 16 int32)
KG = 4  # k per vpdpbusd group
SHIFT = 128  # u8 = q + SHIFT

vzero, vload, vbcast32, vstore_acc, vlane = make_ops(I32X16)
_V16 = ir.VectorType(ir.IntType(32), 16)


@intrinsic
def dpbusd(typingctx, acc, a, b):
    """acc + sum over groups of 4 of u8(a) * s8(b), per int32 lane."""

    def codegen(context, builder, sig, args):
        fn = declare_intrinsic(builder, "llvm.x86.avx512.vpdpbusd.512", _V16, [_V16, _V16, _V16])
        return builder.call(fn, args)

    return I32X16(I32X16, I32X16, I32X16), codegen


def pack(qw):
    """(N, K) int8 -> (flat packed weights [Np/16][Kp/4][16][4], 128*colsum (Np,) int32, Kp)."""
    return pack_k4_blocks(qw, KG, NR, SHIFT)


@njit(**JIT_OPTS)
def _store_row(out, m, N, n0, corr, c0, c1, c2, c3):
    """out[m, n0:n0+64] = acc - corr (as out's dtype), ragged at the N edge."""
    base = m * N + n0
    if n0 + NR <= N:
        vstore_acc(out, base, c0, corr, n0)
        vstore_acc(out, base + 16, c1, corr, n0 + 16)
        vstore_acc(out, base + 32, c2, corr, n0 + 32)
        vstore_acc(out, base + 48, c3, corr, n0 + 48)
    else:
        for j in range(N - n0):
            c = c0 if j < 16 else (c1 if j < 32 else (c2 if j < 48 else c3))
            out[base + j] = np.int32(vlane(c, j % 16) - corr[n0 + j])


@njit(**JIT_OPTS)
def _tile(xq, Kp, m0, wp, nt, out, M, N, corr):
    """Rows m0..m0+4 x cols nt*64..+64: int32 tile in registers, then store.

    xq (Mp*Kp,) u8 rows; wp flat packed weights; out (M*N,) float32 flat.
    """
    bstride = Kp * 16  # bytes per 16-column block
    wb = nt * 4 * bstride
    a0 = m0 * Kp
    a1, a2, a3 = a0 + Kp, a0 + 2 * Kp, a0 + 3 * Kp
    c00 = c01 = c02 = c03 = vzero()
    c10 = c11 = c12 = c13 = vzero()
    c20 = c21 = c22 = c23 = vzero()
    c30 = c31 = c32 = c33 = vzero()
    for k in range(0, Kp, KG):
        w = wb + k * 16
        b0 = vload(wp, w)
        b1 = vload(wp, w + bstride)
        b2 = vload(wp, w + 2 * bstride)
        b3 = vload(wp, w + 3 * bstride)
        x = vbcast32(xq, a0 + k)
        c00, c01, c02, c03 = dpbusd(c00, x, b0), dpbusd(c01, x, b1), dpbusd(c02, x, b2), dpbusd(c03, x, b3)
        x = vbcast32(xq, a1 + k)
        c10, c11, c12, c13 = dpbusd(c10, x, b0), dpbusd(c11, x, b1), dpbusd(c12, x, b2), dpbusd(c13, x, b3)
        x = vbcast32(xq, a2 + k)
        c20, c21, c22, c23 = dpbusd(c20, x, b0), dpbusd(c21, x, b1), dpbusd(c22, x, b2), dpbusd(c23, x, b3)
        x = vbcast32(xq, a3 + k)
        c30, c31, c32, c33 = dpbusd(c30, x, b0), dpbusd(c31, x, b1), dpbusd(c32, x, b2), dpbusd(c33, x, b3)
    n0 = nt * NR
    _store_row(out, m0, N, n0, corr, c00, c01, c02, c03)
    if m0 + 1 < M:
        _store_row(out, m0 + 1, N, n0, corr, c10, c11, c12, c13)
    if m0 + 2 < M:
        _store_row(out, m0 + 2, N, n0, corr, c20, c21, c22, c23)
    if m0 + 3 < M:
        _store_row(out, m0 + 3, N, n0, corr, c30, c31, c32, c33)


@njit(parallel=True, **JIT_OPTS)
def qlinear_kernel(x, wp, corr, sw, wsum, bias, in_scale, out, xq, rowq, Kp, gelu):
    """Fused quantize + GEMM + dequant (+GELU). x (M, K) f32 -> out (M, N) f32.

    xq: u8 scratch (>= ceil(M/4)*4*Kp,); rowq: f32 scratch (2, >= M). Returns the
    number of rows with NaN/Inf (their output is garbage).
    """
    M = x.shape[0]
    N = out.shape[1]
    bad = quantize_all(x, xq, rowq, SHIFT, Kp, in_scale)
    outf = out.reshape(-1)
    n_mt = (M + MR - 1) // MR
    n_nt = (N + NR - 1) // NR
    # Tile t -> (nt, mt), mt fastest: a task's run of tiles reuses a weight
    # panel; even M=1 gives each thread some column tiles.
    n_tiles = n_mt * n_nt
    per = tiles_per_task(n_tiles)
    for task in prange((n_tiles + per - 1) // per):
        for t in range(task * per, min(task * per + per, n_tiles)):
            nt, mt = t // n_mt, t % n_mt
            m0, n0 = mt * MR, nt * NR
            _tile(xq, Kp, m0, wp, nt, outf, M, N, corr)
            for m in range(m0, min(m0 + MR, M)):
                finish_row(out, m, n0, min(n0 + NR, N), rowq, sw, wsum, bias, gelu)
    return bad


@njit(parallel=True, **JIT_OPTS)
def gemm_i32_kernel(xq, wp, corr, out, Kp):
    """Pure int8 GEMM: u8 rows xq (>= ceil(M/4)*4*Kp,) x packed w -> out (M, N) int32."""
    M, N = out.shape
    outf = out.reshape(-1)
    n_mt = (M + MR - 1) // MR
    n_nt = (N + NR - 1) // NR
    n_tiles = n_mt * n_nt
    per = tiles_per_task(n_tiles)
    for task in prange((n_tiles + per - 1) // per):
        for t in range(task * per, min(task * per + per, n_tiles)):
            nt, mt = t // n_mt, t % n_mt
            _tile(xq, Kp, mt * MR, wp, nt, outf, M, N, corr)
