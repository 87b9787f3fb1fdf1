"""AVX2 int8 linear kernels: explicit ``vpmaddwd`` over a 4x16 tile.

Import (and so compile) this module only on a CPU with AVX2. The same tile
loop also serves the AVX-VNNI path (``gemm_avxvnni``): with u8 activations it
multiplies with ``vpdpbusd`` on ymm instead (see ``dot``).

``vpmaddubsw`` (u8 x s8 -> saturating i16) would overflow on 127*127*2, so
both operands are sign-extended to int16 and multiplied with ``vpmaddwd``
(i16 x i16, adjacent pairs summed into i32), which cannot saturate here:
|pair sum| <= 2*127*127. Activations are stored as int16 q (no zero-point,
no correction). Weights are packed ``[Np/8][Kp/2][8][2]`` int8 and
sign-extended to int16 as they are loaded (``vpmovsxbw ymm, m128``): one
vector holds 2 consecutive k of 8 columns, from half the bytes an int16
layout would stream (small inputs are bound by reading the weights). The 4x16 tile keeps 8 ymm
accumulators + 2 weight vectors + 1 broadcast within the 16 AVX2 registers
(6x16 with ``vpdpbusd``, which needs no register for a product).
"""

import numpy as np
from . import _jit  # noqa: F401,I001  (Numba with edgebert's settings first)
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic, overload

from .gemm_portable import JIT_OPTS, gelu_span, quantize_all, tiles_per_task
from .packing import pack_pairs
from .simd import I32X8, declare_intrinsic, make_dequant_store, make_ops, prefetch

MR = 4  # rows per register tile (gemm_avxvnni: 6; see _tile)
NR = 16  # columns per register tile (2 ymm of 8 int32)
KG = 2  # k per vpmaddwd pair
PANEL_ROWS = 128  # rows per block that each weight panel sweeps (see _tile_at)
SHIFT = 0  # activations are plain int16 q
# The AVX-VNNI variant's constants (gemm_avxvnni takes these, so the scratch
# padding there and the tiles here agree): u8 rows = q + VNNI_SHIFT, VNNI_MR rows per tile.
VNNI_MR = 6
VNNI_SHIFT = 128

vzero, vload, vbcast32, vstore_acc, vlane = make_ops(I32X8)
vstore_out = make_dequant_store(I32X8)
_V8 = ir.VectorType(ir.IntType(32), 8)
_V16H = ir.VectorType(ir.IntType(16), 16)


_V16B = ir.VectorType(ir.IntType(8), 16)


@intrinsic
def wload(typingctx, wp, idx, xq):
    """The weight vector at element ``idx`` of ``wp`` for rows like ``xq``: int16 rows (AVX2)
    take 16 int8 weights sign-extended to int16 (one ``vpmovsxbw`` from memory); u8 rows
    (AVX-VNNI) take 32 int8 weights as they are."""
    widen = xq.dtype.bitwidth == 16

    def codegen(context, builder, sig, args):
        arr = context.make_array(sig.args[0])(context, builder, args[0])
        ptr = builder.gep(arr.data, [args[1]])
        if widen:
            raw = builder.load(builder.bitcast(ptr, _V16B.as_pointer()), align=1)
            return builder.bitcast(builder.sext(raw, _V16H), _V8)
        return builder.load(builder.bitcast(ptr, _V8.as_pointer()), align=1)

    return I32X8(wp, idx, xq), codegen


@intrinsic
def dot(typingctx, acc, a, b, xq):
    """acc + the dot products of a (activations) and b (weights) per int32 lane.

    ``xq``, the activation rows' array, picks the instruction by its dtype:
    int16 -> ``vpmaddwd`` (pairs of i16 x i16) + add, on AVX2; uint8 ->
    ``vpdpbusd`` (groups of 4 u8 x s8), on AVX-VNNI CPUs only (the path's
    module is imported only there, so only there is this variant compiled).
    """
    vnni = xq.dtype.bitwidth == 8

    def codegen(context, builder, sig, args):
        if vnni:
            fn = declare_intrinsic(builder, "llvm.x86.avx512.vpdpbusd.256", _V8, [_V8, _V8, _V8])
            return builder.call(fn, list(args[:3]))
        fn = declare_intrinsic(builder, "llvm.x86.avx2.pmadd.wd", _V8, [_V16H, _V16H])
        prod = builder.call(fn, [builder.bitcast(args[1], _V16H), builder.bitcast(args[2], _V16H)])
        return builder.add(args[0], prod)

    return I32X8(I32X8, I32X8, I32X8, xq), codegen


def pack(qw):
    """(N, K) int8 -> (flat packed int8 weights [Np/8][Kp/2][8][2], zeros (Np,) int32, Kp)."""
    return pack_pairs(qw, KG, NR)


def _ragged(out, m0, rows, N, n0, corr, acc, rowq, sw, wsum, bias):
    """The last column tile (< 16 columns), lane by lane: what vstore_out stores for whole ones.
    acc: the tile's accumulators as a tuple (row 0 cols 0-7, row 0 cols 8-15, row 1 ...)."""


@overload(_ragged, jit_options=JIT_OPTS)
def _ragged_by_dtype(out, m0, rows, N, n0, corr, acc, rowq, sw, wsum, bias):
    if out.dtype == types.float32:

        def ragged_f32(out, m0, rows, N, n0, corr, acc, rowq, sw, wsum, bias):
            for r in range(rows):
                m = m0 + r
                for j in range(N - n0):
                    n = n0 + j
                    a = np.float32(np.int32(vlane(_pick(acc, 2 * r + j // 8), j % 8) - corr[n]))
                    out[m * N + n] = a * (rowq[0, m] * sw[n]) + (rowq[1, m] * wsum[n] + bias[n])

        return ragged_f32

    def ragged_i32(out, m0, rows, N, n0, corr, acc, rowq, sw, wsum, bias):
        for r in range(rows):
            for j in range(N - n0):
                out[(m0 + r) * N + n0 + j] = np.int32(vlane(_pick(acc, 2 * r + j // 8), j % 8) - corr[n0 + j])

    return ragged_i32


@njit(inline="always", **JIT_OPTS)
def _pick(acc, i):
    """acc[i] of a homogeneous tuple of 12 vectors (a literal-free index for Numba)."""
    v = acc[0]
    for k in range(12):
        if k == i:
            v = acc[k]
    return v


@njit(_nrt=False, **JIT_OPTS)
def _tile(xq, Kp, m0, wp, nt, out, M, N, corr, rowq, sw, wsum, bias, pf):
    """Rows m0..m0+mr x cols nt*16..+16 in registers, then store.

    xq (Mp*Kp,) int16 rows with wp packed [Np/8][Kp/2][8][2] int8 (widened as
    loaded), or u8 rows with wp packed [Np/8][Kp/4][8][4] int8 (AVX-VNNI): 8
    columns of one k group per vector either way, at the same element
    offsets, so the offsets below serve both.
    out (M*N,) flat: int32 accumulators, or float32 dequantized with rowq, sw, wsum
    and bias (``vstore_out``; the int32 GEMM passes None for those).

    pf: prefetch the next column tile's weights while streaming this one's.
    A block's first row tile reads its panel from memory (in a forward, a
    linear's weights were last used a whole forward ago and are out of cache:
    each MiniLM linear took 0.1-0.6 ms longer than with hot weights); callers
    set pf on that tile when the same task computes the next panel too.

    Rows per tile, ``_rows(xq)``: 6 with ``vpdpbusd`` (12 accumulators hide its
    latency: +13-37 % over 4 rows at MiniLM's shapes, two runs), 4 with ``vpmaddwd``
    (whose product needs a spare register: 6 rows were 7-14 % slower). The
    choice is a compile-time constant per dtype, so the branches on it below
    vanish from the compiled loop.
    """
    six = _rows(xq) == VNNI_MR
    kg = _k_per_lane(xq)  # k per 32-bit lane: 2 int16 or 4 u8
    bstride = Kp * 8  # weight elements per 8-column block
    wb = nt * 2 * bstride
    a0 = m0 * Kp
    a1, a2, a3, a4, a5 = a0 + Kp, a0 + 2 * Kp, a0 + 3 * Kp, a0 + 4 * Kp, a0 + 5 * Kp
    c00 = c01 = c10 = c11 = c20 = c21 = vzero()
    c30 = c31 = c40 = c41 = c50 = c51 = vzero()
    nxt = 2 * bstride  # the next column tile's weights, at the same offsets
    for k in range(0, Kp, kg):
        w = wb + k * 8
        if pf:
            prefetch(wp, w + nxt)
            prefetch(wp, w + nxt + bstride)
        b0 = wload(wp, w, xq)
        b1 = wload(wp, w + bstride, xq)
        x = vbcast32(xq, a0 + k)
        c00, c01 = dot(c00, x, b0, xq), dot(c01, x, b1, xq)
        x = vbcast32(xq, a1 + k)
        c10, c11 = dot(c10, x, b0, xq), dot(c11, x, b1, xq)
        x = vbcast32(xq, a2 + k)
        c20, c21 = dot(c20, x, b0, xq), dot(c21, x, b1, xq)
        x = vbcast32(xq, a3 + k)
        c30, c31 = dot(c30, x, b0, xq), dot(c31, x, b1, xq)
        if six:
            x = vbcast32(xq, a4 + k)
            c40, c41 = dot(c40, x, b0, xq), dot(c41, x, b1, xq)
            x = vbcast32(xq, a5 + k)
            c50, c51 = dot(c50, x, b0, xq), dot(c51, x, b1, xq)
    # Stores: the intrinsic in place (a helper per row would reference-count the arrays at
    # every call, which cost more than the stores), lane by lane at a ragged N edge.
    n0 = nt * NR
    rows = min(_rows(xq), M - m0)
    if n0 + NR > N:
        acc = (c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51)
        _ragged(out, m0, rows, N, n0, corr, acc, rowq, sw, wsum, bias)
        return
    b = m0 * N + n0
    vstore_out(out, b, c00, corr, n0, rowq, m0, sw, wsum, bias)
    vstore_out(out, b + 8, c01, corr, n0 + 8, rowq, m0, sw, wsum, bias)
    if rows > 1:
        vstore_out(out, b + N, c10, corr, n0, rowq, m0 + 1, sw, wsum, bias)
        vstore_out(out, b + N + 8, c11, corr, n0 + 8, rowq, m0 + 1, sw, wsum, bias)
    if rows > 2:
        vstore_out(out, b + 2 * N, c20, corr, n0, rowq, m0 + 2, sw, wsum, bias)
        vstore_out(out, b + 2 * N + 8, c21, corr, n0 + 8, rowq, m0 + 2, sw, wsum, bias)
    if rows > 3:
        vstore_out(out, b + 3 * N, c30, corr, n0, rowq, m0 + 3, sw, wsum, bias)
        vstore_out(out, b + 3 * N + 8, c31, corr, n0 + 8, rowq, m0 + 3, sw, wsum, bias)
    if six and rows > 4:
        vstore_out(out, b + 4 * N, c40, corr, n0, rowq, m0 + 4, sw, wsum, bias)
        vstore_out(out, b + 4 * N + 8, c41, corr, n0 + 8, rowq, m0 + 4, sw, wsum, bias)
    if six and rows > 5:
        vstore_out(out, b + 5 * N, c50, corr, n0, rowq, m0 + 5, sw, wsum, bias)
        vstore_out(out, b + 5 * N + 8, c51, corr, n0 + 8, rowq, m0 + 5, sw, wsum, bias)


def _rows(xq):
    """Rows per register tile: 6 for u8 (AVX-VNNI) rows, 4 for int16 (AVX2); see ``_tile``."""
    return VNNI_MR if xq.itemsize == 1 else MR


def _k_per_lane(xq):
    """k per 32-bit lane: 2 for int16 rows, 4 for u8."""
    return 4 // xq.itemsize


# Both as compile-time constants of xq's dtype: an array's ``itemsize`` is a runtime field in
# Numba, and with it the tile loop kept both row counts and a runtime k step (the 6-row copy
# spilled accumulators to the stack); from the type, the loop is one straight 4- or 6-row body.
@overload(_rows, inline="always")
def _rows_const(xq):
    rows = VNNI_MR if xq.dtype.bitwidth == 8 else MR
    return lambda xq: rows


@overload(_k_per_lane, inline="always")
def _k_per_lane_const(xq):
    kg = 32 // xq.dtype.bitwidth
    return lambda xq: kg


@njit(inline="always", **JIT_OPTS)
def _tile_at(t, n_nt, bt):
    """Tile number t -> (column tile nt, row tile mt), for blocks of bt row tiles.

    Within a block of rows, mt runs fastest: a task's run of tiles reuses one
    weight panel, and even M=1 gives each thread some column tiles. Blocks of
    PANEL_ROWS rows keep the rows a panel sweeps in L2: at 4096 rows (32x128)
    one sweep over all rows per 16-column panel read 3-12 MB of int16 rows from
    L3 or memory per panel (int8 GEMM 53 against 85-93 GOPS at 128 rows, 1 thread).
    Tiles past the last row tile (mt >= n_mt, in a short last block) are skipped.
    """
    per_blk = bt * n_nt
    r = t % per_blk
    return r // bt, (t // per_blk) * bt + r % bt


@njit(parallel=True, **JIT_OPTS)
def qlinear_kernel(x, wp, corr, sw, wsum, bias, in_scale, out, xq, rowq, Kp, gelu):
    """Fused quantize + GEMM + dequant (+GELU). x (M, K) f32 -> out (M, N) f32.

    xq: int16 scratch, or u8 for AVX-VNNI (>= ceil(M/mr)*mr*Kp,); rowq: f32
    scratch (2, >= M). Returns the number of rows with NaN/Inf (their output
    is garbage).
    """
    M = x.shape[0]
    N = out.shape[1]
    bad = quantize_all(x, xq, rowq, VNNI_SHIFT if _rows(xq) == VNNI_MR else SHIFT, Kp, in_scale)
    outf = out.reshape(-1)
    mr = _rows(xq)
    n_mt = (M + mr - 1) // mr
    n_nt = (N + NR - 1) // NR
    bt = min(n_mt, max(1, PANEL_ROWS // mr))
    n_tiles = ((n_mt + bt - 1) // bt) * bt * n_nt
    per = tiles_per_task(n_tiles)
    for task in prange((n_tiles + per - 1) // per):
        end = min(task * per + per, n_tiles)
        for t in range(task * per, end):
            nt, mt = _tile_at(t, n_nt, bt)
            if mt >= n_mt:
                continue
            m0, n0 = mt * mr, nt * NR
            pf = mt % bt == 0 and nt + 1 < n_nt and t + bt < end  # this task's next panel
            _tile(xq, Kp, m0, wp, nt, outf, M, N, corr, rowq, sw, wsum, bias, pf)
            if gelu:
                for m in range(m0, min(m0 + mr, M)):
                    gelu_span(out, m, n0, min(n0 + NR, N))
    return bad


@njit(parallel=True, **JIT_OPTS)
def gemm_i32_kernel(xq, wp, corr, out, Kp):
    """Pure int8 GEMM: int16 (or u8, AVX-VNNI) rows xq (>= ceil(M/mr)*mr*Kp,) x packed w -> out (M, N) int32."""
    M, N = out.shape
    outf = out.reshape(-1)
    mr = _rows(xq)
    n_mt = (M + mr - 1) // mr
    n_nt = (N + NR - 1) // NR
    bt = min(n_mt, max(1, PANEL_ROWS // mr))
    n_tiles = ((n_mt + bt - 1) // bt) * bt * n_nt
    per = tiles_per_task(n_tiles)
    for task in prange((n_tiles + per - 1) // per):
        end = min(task * per + per, n_tiles)
        for t in range(task * per, end):
            nt, mt = _tile_at(t, n_nt, bt)
            if mt >= n_mt:
                continue
            pf = mt % bt == 0 and nt + 1 < n_nt and t + bt < end
            _tile(xq, Kp, mt * mr, wp, nt, outf, M, N, corr, None, None, None, None, pf)
