"""aarch64 dot-product int8 linear kernels: explicit ``sdot`` over a 4x16 tile.

Import (and so compile) this module only on a CPU whose kernel reports the
dot-product extension (AT_HWCAP ASIMDDP: Cortex-A76 / Raspberry Pi 5 and
later; not the Pi 4's A72): ``sdot`` on a CPU without it is SIGILL, and the
intrinsic compiled for an LLVM target without ``dotprod`` aborts the process.

``sdot`` multiplies signed by signed bytes, 4 products summed per int32
lane: activations are plain int8 q (no shift, no correction), weights are
packed ``[Np/4][Kp/4][4][4]`` (one 16-byte vector holds 4 consecutive k of 4
columns). Per group of 4 k the inner loop is 4 weight loads, 4 broadcasts
and 16 ``sdot`` into 16 of the 32 NEON registers. The accumulators are exact
int32, so the output is bit-identical to the portable path and the NumPy
reference (gemm_ref).

The tile function carries ``"target-features"="+neon,+dotprod"``: it is
compiled with the instruction even where LLVM cannot name the host CPU
(new cores; QEMU, which shows the emulated program the host's /proc/cpuinfo),
because the path is chosen from the kernel's AT_HWCAP (cpu.py), not from
LLVM's view of the host.
"""

import numpy as np
from . import _jit  # noqa: F401,I001  (Numba with edgebert's settings first)
from llvmlite import ir
from numba import njit, prange
from numba.extending import intrinsic

from .gemm_portable import JIT_OPTS, finish_row, quantize_all, tiles_per_task
from .packing import pack_k4_blocks
from .simd import I32X4, declare_intrinsic, make_ops

MR = 4  # rows per register tile
NR = 16  # columns per register tile (4 vectors of 4 int32)
KG = 4  # k per sdot group
SHIFT = 0  # activations are plain int8 q
TARGET_FEATURES = "+neon,+dotprod"  # the tile function's own LLVM target features (see above)

vzero, vload, vbcast32, vstore_acc, vlane = make_ops(I32X4)
_V4 = ir.VectorType(ir.IntType(32), 4)
_V16B = ir.VectorType(ir.IntType(8), 16)


@intrinsic
def sdot(typingctx, acc, a, b):
    """acc + sum over groups of 4 of s8(a) * s8(b), per int32 lane (one ``sdot v.4s, v.16b, v.16b``)."""

    def codegen(context, builder, sig, args):
        fn = declare_intrinsic(builder, "llvm.aarch64.neon.sdot.v4i32.v16i8", _V4, [_V4, _V16B, _V16B])
        # set.add: llvmlite's attribute check knows no string attributes; this one is
        # written into the IR as is, and makes LLVM select sdot for this function.
        set.add(builder.function.attributes, f'"target-features"="{TARGET_FEATURES}"')
        return builder.call(fn, [args[0], builder.bitcast(args[1], _V16B), builder.bitcast(args[2], _V16B)])

    return I32X4(I32X4, I32X4, I32X4), codegen


def pack(qw):
    """(N, K) int8 -> (flat packed weights [Np/4][Kp/4][4][4], zeros (Np,) int32, Kp)."""
    return pack_k4_blocks(qw, KG, NR, SHIFT, lanes=4)


@njit(**JIT_OPTS)
def _store_row(out, m, N, n0, corr, c0, c1, c2, c3):
    """out[m, n0:n0+16] = acc - corr (as out's dtype), ragged at the N edge."""
    base = m * N + n0
    if n0 + NR <= N:
        vstore_acc(out, base, c0, corr, n0)
        vstore_acc(out, base + 4, c1, corr, n0 + 4)
        vstore_acc(out, base + 8, c2, corr, n0 + 8)
        vstore_acc(out, base + 12, c3, corr, n0 + 12)
    else:
        for j in range(N - n0):
            c = c0 if j < 4 else (c1 if j < 8 else (c2 if j < 12 else c3))
            out[base + j] = np.int32(vlane(c, j % 4) - corr[n0 + j])


@njit(**JIT_OPTS)
def _tile(xq, Kp, m0, wp, nt, out, M, N, corr):
    """Rows m0..m0+4 x cols nt*16..+16: int32 tile in registers, then store.

    xq (Mp*Kp,) int8 rows; wp flat packed weights; out (M*N,) flat.
    """
    bstride = Kp * 4  # bytes per 4-column block
    wb = nt * 4 * bstride
    a0 = m0 * Kp
    a1, a2, a3 = a0 + Kp, a0 + 2 * Kp, a0 + 3 * Kp
    c00 = c01 = c02 = c03 = vzero()
    c10 = c11 = c12 = c13 = vzero()
    c20 = c21 = c22 = c23 = vzero()
    c30 = c31 = c32 = c33 = vzero()
    for k in range(0, Kp, KG):
        w = wb + k * 4
        b0 = vload(wp, w)
        b1 = vload(wp, w + bstride)
        b2 = vload(wp, w + 2 * bstride)
        b3 = vload(wp, w + 3 * bstride)
        x = vbcast32(xq, a0 + k)
        c00, c01, c02, c03 = sdot(c00, x, b0), sdot(c01, x, b1), sdot(c02, x, b2), sdot(c03, x, b3)
        x = vbcast32(xq, a1 + k)
        c10, c11, c12, c13 = sdot(c10, x, b0), sdot(c11, x, b1), sdot(c12, x, b2), sdot(c13, x, b3)
        x = vbcast32(xq, a2 + k)
        c20, c21, c22, c23 = sdot(c20, x, b0), sdot(c21, x, b1), sdot(c22, x, b2), sdot(c23, x, b3)
        x = vbcast32(xq, a3 + k)
        c30, c31, c32, c33 = sdot(c30, x, b0), sdot(c31, x, b1), sdot(c32, x, b2), sdot(c33, x, b3)
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

    xq: int8 scratch (>= ceil(M/4)*4*Kp,); rowq: f32 scratch (2, >= M). Returns the
    number of rows with NaN/Inf (their output is garbage).
    """
    M = x.shape[0]
    N = out.shape[1]
    bad = quantize_all(x, xq, rowq, SHIFT, Kp, in_scale)
    outf = out.reshape(-1)
    n_mt = (M + MR - 1) // MR
    n_tiles = n_mt * ((N + NR - 1) // NR)
    per = tiles_per_task(n_tiles)
    # Tile t -> (nt, mt), mt fastest: a task's run of tiles reuses a weight panel.
    for task in prange((n_tiles + per - 1) // per):
        for t in range(task * per, min(task * per + per, n_tiles)):
            nt, mt = t // n_mt, t % n_mt
            _tile(xq, Kp, mt * MR, wp, nt, outf, M, N, corr)
            for m in range(mt * MR, min(mt * MR + MR, M)):
                finish_row(out, m, nt * NR, min(nt * NR + NR, N), rowq, sw, wsum, bias, gelu)
    return bad


@njit(parallel=True, **JIT_OPTS)
def gemm_i32_kernel(xq, wp, corr, out, Kp):
    """Pure int8 GEMM: int8 rows xq (>= ceil(M/4)*4*Kp,) x packed w -> out (M, N) int32."""
    M, N = out.shape
    outf = out.reshape(-1)
    n_mt = (M + MR - 1) // MR
    n_tiles = n_mt * ((N + NR - 1) // NR)
    per = tiles_per_task(n_tiles)
    for task in prange((n_tiles + per - 1) // per):
        for t in range(task * per, min(task * per + per, n_tiles)):
            _tile(xq, Kp, (t % n_mt) * MR, wp, t // n_mt, outf, M, N, corr)
