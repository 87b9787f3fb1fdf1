"""Intel AMX int8 linear kernels: ``tdpbusd`` on 16x16 int32 tiles.

Import (and so compile) this module only when ``cpu.py`` selected the amx
path: the tile intrinsics abort LLVM/the process on a CPU without AMX, and
Linux raises SIGILL unless the process obtained the XTILEDATA permission
(``cpu.amx_permitted``) first.

Layout: activations u8 = q + 128 in rows of Kp bytes (Kp = K padded to 64),
rows padded to MR; weights packed ``[Np/16][Kp/4][16][4]`` as for VNNI, so
one 16-column block over 64 k (16 rows of 64 bytes, stride 64) is exactly an
AMX B tile. The GEMM subtracts 128 * colsum(w), precomputed at pack time.
Register tiling: C tiles 0-3 hold a 32x32 int32 block (2x2 tiles), A tiles
4-5 (two 16-row halves), B tiles 6-7 (two 16-column halves). When M < 16
the A and C tiles are configured with M rows, so TMUL does no padded rows.

Tile configuration is per thread: every prange task loads it (ldtilecfg)
before its first tile instruction and releases it (tilerelease) at the end.
Integer accumulation is exact and each output element is computed by one
task, so results do not depend on the thread count or schedule; calls under
``SERIAL_OPS`` run as one task on the calling thread.

Tile rows must not straddle cache lines: misaligned A/B data made tile loads
about 3x slower (25 vs 7 ns per 1 KiB tile), so weights, the activation
scratch (``gemm._aligned_empty``) and the kernels' own buffers are 64-byte
aligned; an int32 ``out`` gets direct tile stores only where aligned.
"""

from . import _jit  # noqa: F401,I001  (Numba with edgebert's settings first)
import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

from .gemm_portable import JIT_OPTS, finish_row, quantize_row, residual_row
from .norm import add_norm_rows
from .packing import pack_k4_blocks
from .simd import I32X16, declare_intrinsic, make_ops

MR = 32  # rows per register block (2 A tiles)
NR = 32  # columns per register block (2 B tiles); weights padded to this
KG = 64  # k per tile step (64 bytes per A tile row)
MB = 8  # most register blocks per prange task along M
NB = 48  # most register blocks per prange task along N
SHIFT = 128  # u8 = q + SHIFT

_, vload, _, vstore_acc, _ = make_ops(I32X16)
_I8 = ir.IntType(8)
_I8P = _I8.as_pointer()
_I64 = ir.IntType(64)
_VOID = ir.VoidType()


def _byte_ptr(context, builder, aryty, ary, idx, idxty):
    """i8* to element ``idx`` of a 1-D C-contiguous array (no bounds check)."""
    arr = context.make_array(aryty)(context, builder, ary)
    i = context.cast(builder, idx, idxty, types.int64)
    return builder.bitcast(builder.gep(arr.data, [i]), _I8P)


@intrinsic
def tile_config(typingctx, cfg):
    """ldtilecfg from the 64 bytes of the u8 array ``cfg``."""

    def codegen(context, builder, sig, args):
        fn = declare_intrinsic(builder, "llvm.x86.ldtilecfg", _VOID, [_I8P])
        builder.call(fn, [_byte_ptr(context, builder, sig.args[0], args[0], ir.Constant(_I64, 0), types.int64)])
        return context.get_dummy_value()

    return types.void(cfg), codegen


@intrinsic
def tile_release(typingctx):
    def codegen(context, builder, sig, args):
        builder.call(declare_intrinsic(builder, "llvm.x86.tilerelease", _VOID, []), [])
        return context.get_dummy_value()

    return types.void(), codegen


# The tile number of every AMX intrinsic is an immediate, so each tile
# register gets its own Numba intrinsic.
def _make_load(t):
    @intrinsic
    def tload(typingctx, ary, idx, stride):
        """Load tile ``t`` from ``ary[idx:]``, rows ``stride`` bytes apart."""

        def codegen(context, builder, sig, args):
            fn = declare_intrinsic(builder, "llvm.x86.tileloadd64", _VOID, [_I8, _I8P, _I64])
            ptr = _byte_ptr(context, builder, sig.args[0], args[0], args[1], sig.args[1])
            stride = context.cast(builder, args[2], sig.args[2], types.int64)
            builder.call(fn, [ir.Constant(_I8, t), ptr, stride])
            return context.get_dummy_value()

        return types.void(ary, idx, stride), codegen

    return tload


def _make_store(t):
    @intrinsic
    def tstore(typingctx, ary, idx, stride):
        """Store tile ``t`` to ``ary[idx:]``, rows ``stride`` bytes apart."""

        def codegen(context, builder, sig, args):
            fn = declare_intrinsic(builder, "llvm.x86.tilestored64", _VOID, [_I8, _I8P, _I64])
            ptr = _byte_ptr(context, builder, sig.args[0], args[0], args[1], sig.args[1])
            stride = context.cast(builder, args[2], sig.args[2], types.int64)
            builder.call(fn, [ir.Constant(_I8, t), ptr, stride])
            return context.get_dummy_value()

        return types.void(ary, idx, stride), codegen

    return tstore


def _make_dpbusd(c, a, b):
    @intrinsic
    def tdp(typingctx):
        """C tile c += u8 A tile a x s8 B tile b (groups of 4 k)."""

        def codegen(context, builder, sig, args):
            fn = declare_intrinsic(builder, "llvm.x86.tdpbusd", _VOID, [_I8, _I8, _I8])
            builder.call(fn, [ir.Constant(_I8, c), ir.Constant(_I8, a), ir.Constant(_I8, b)])
            return context.get_dummy_value()

        return types.void(), codegen

    return tdp


tstore0, tstore1, tstore2, tstore3 = (_make_store(t) for t in range(4))
tload0, tload1, tload2, tload3, tload4, tload5, tload6, tload7 = (_make_load(t) for t in range(8))
tdp046, tdp147, tdp256, tdp357 = _make_dpbusd(0, 4, 6), _make_dpbusd(1, 4, 7), _make_dpbusd(2, 5, 6), _make_dpbusd(3, 5, 7)


def pack(qw):
    """(N, K) int8 -> (flat packed weights [Np/16][Kp/4][16][4], 64-byte aligned; 128*colsum (Np,) int32; Kp)."""
    return pack_k4_blocks(qw, KG, NR, SHIFT)


@njit(**JIT_OPTS)
def _set_config(cfg, M):
    """64-byte tile config: palette 1, every tile 64 bytes wide; B tiles 6-7
    have 16 rows, A and C tiles min(M, 16) rows (no padded rows when M < 16)."""
    cfg[:] = 0
    cfg[0] = 1
    rows = min(M, 16)
    for t in range(8):
        cfg[16 + 2 * t] = 64  # colsb, a little-endian u16
        cfg[48 + t] = 16 if t >= 6 else rows


@njit(**JIT_OPTS)
def _block(xq, Kp, wp, m0, nt, neg):
    """C tiles 0-3 = -corr + u8 rows m0..m0+32 x packed cols nt*32..+32."""
    bstride = Kp * 16  # bytes per 16-column block
    wb = nt * 2 * bstride
    a0 = m0 * Kp
    a1 = a0 + 16 * Kp
    tload0(neg, 0, 0)
    tload1(neg, 16, 0)
    tload2(neg, 0, 0)
    tload3(neg, 16, 0)
    for k in range(0, Kp, KG):
        tload4(xq, a0 + k, Kp)
        tload6(wp, wb + k * 16, 64)
        tload7(wp, wb + bstride + k * 16, 64)
        tdp046()
        tdp147()
        tload5(xq, a1 + k, Kp)
        tdp256()
        tdp357()


@njit(**JIT_OPTS)
def _block_half(xq, Kp, wp, m0, nt, neg):
    """As ``_block`` for the top 16 (or M < 16) rows only: C tiles 0-1."""
    bstride = Kp * 16
    wb = nt * 2 * bstride
    a0 = m0 * Kp
    tload0(neg, 0, 0)
    tload1(neg, 16, 0)
    for k in range(0, Kp, KG):
        tload4(xq, a0 + k, Kp)
        tload6(wp, wb + k * 16, 64)
        tload7(wp, wb + bstride + k * 16, 64)
        tdp046()
        tdp147()


@njit(**JIT_OPTS)
def _store_full(dst, base, stride):
    """C tiles 0-3 (32x32 int32) -> dst[base:], rows ``stride`` bytes apart."""
    tstore0(dst, base, stride)
    tstore1(dst, base + 16, stride)
    tstore2(dst, base + 4 * stride, stride)
    tstore3(dst, base + 4 * stride + 16, stride)


@njit(**JIT_OPTS)
def _store_half(dst, base, stride):
    tstore0(dst, base, stride)
    tstore1(dst, base + 16, stride)


@njit(**JIT_OPTS)
def _task(xq, Kp, wp, corr, M, mb0, mb1, nt0, nt1, out, int_out, rowq, sw, wsum, bias, gelu):
    """Register blocks mb0..mb1 (rows) x nt0..nt1 (columns) -> out (M, N).

    Row panels outermost, so ``out`` is written row-contiguously. The C tiles
    start from -corr (loaded with row stride 0), so they end holding the
    corrected sums. int_out (out is int32): full blocks are stored straight
    from the tiles, ragged ones through ``acc``. Otherwise (out is float32)
    each block goes through ``acc`` as float(acc), and the shared epilogue
    runs on each row of the panel while it is still in cache.
    """
    N = out.shape[1]
    outf = out.reshape(-1)
    # acc, -corr and the tile config, 64-byte aligned (tile rows that
    # straddle cache lines are slow).
    raw = np.empty(MR * NR + NR + 48, np.int32)
    off = ((-raw.ctypes.data) % 64) // 4
    buf = raw[off : off + MR * NR + NR + 32]
    acc = buf[: MR * NR]
    neg = buf[MR * NR : MR * NR + NR]
    cfg = buf[MR * NR + NR : MR * NR + NR + 16].view(np.uint8)
    zero = buf[MR * NR + NR + 16 :]
    zero[:] = 0
    _set_config(cfg, M)
    tile_config(cfg)
    for mb in range(mb0, mb1):
        m0 = mb * MR
        rows = min(MR, M - m0)
        for nt in range(nt0, nt1):
            n0 = nt * NR
            nn = min(NR, N - n0)
            for j in range(NR):
                neg[j] = -corr[n0 + j]
            if rows <= 16:
                _block_half(xq, Kp, wp, m0, nt, neg)
            else:
                _block(xq, Kp, wp, m0, nt, neg)
            if int_out and rows == MR and nn == NR and (outf.ctypes.data + 4 * (m0 * N + n0)) % 64 == 0:
                _store_full(outf, m0 * N + n0, N * 4)
                continue
            if rows <= 16:
                _store_half(acc, 0, NR * 4)
            else:
                _store_full(acc, 0, NR * 4)
            for r in range(rows):
                base = (m0 + r) * N + n0
                if nn == NR:  # 2 vector stores (LLVM leaves the plain loop scalar)
                    vstore_acc(outf, base, vload(acc, r * NR), zero, 0)
                    vstore_acc(outf, base + 16, vload(acc, r * NR + 16), zero, 0)
                else:
                    for j in range(nn):
                        outf[base + j] = acc[r * NR + j]
        if not int_out:  # the row panel is still in cache
            for m in range(m0, m0 + rows):
                finish_row(out, m, nt0 * NR, min(nt1 * NR, N), rowq, sw, wsum, bias, gelu)
    tile_release()


@njit(**JIT_OPTS)
def _split(M, N):
    """Task grid: (row blocks per task, column blocks per task, #row tasks, #col tasks).

    Up to 8 x 48 register blocks (256 rows x 1536 columns) per task: wide
    row panels write ``out`` row-contiguously (measured 1.2x over 384-column
    panels at 4096x384x1536) and keep the per-row epilogue calls few. Split
    further until there are >= 4 tasks where the shape allows, so that two
    threads stay busy (dynamic schedule); numba.get_num_threads() here would
    make the kernels uncacheable. The integer sums are exact and each output
    is computed by one task, so any split gives the same result.
    """
    n_mb = (M + MR - 1) // MR
    n_nb = (N + NR - 1) // NR
    mbs = min(MB, n_mb)
    nbs = min(NB, n_nb)
    while ((n_mb + mbs - 1) // mbs) * ((n_nb + nbs - 1) // nbs) < 4 and (mbs > 1 or nbs > 1):
        if nbs >= mbs:
            nbs = (nbs + 1) // 2
        else:
            mbs = (mbs + 1) // 2
    return mbs, nbs, (n_mb + mbs - 1) // mbs, (n_nb + nbs - 1) // nbs


# Below this many operations (2*M*Kp*N) a call runs on the calling thread
# only. Alone, waking a sleeping second worker cost more than it saved up to
# about 40-110 M ops (e.g. 16x384x384: 10 us on 1 thread, 25 us on 2); inside
# a forward pass the workers are still spinning from the previous kernel, and
# whole-model timings on 2 threads were 5 % faster at 8 M than at 48 M (1x128:
# 5.56 vs 5.86 ms; 1x16: 1.36 vs 1.44 ms; 1 thread unchanged).
SERIAL_OPS = 8_000_000


def qlinear_kernel(x, wp, corr, sw, wsum, bias, in_scale, out, xq, rowq, Kp, gelu):
    """Fused quantize + GEMM + dequant (+GELU). x (M, K) f32 -> out (M, N) f32.

    xq: u8 scratch (>= ceil(M/32)*32*Kp,); rowq: f32 scratch (2, >= M). Returns
    the number of rows with NaN/Inf (their output is garbage).
    """
    small = 2 * x.shape[0] * Kp * out.shape[1] < SERIAL_OPS
    return (_qlinear_serial if small else _qlinear_parallel)(x, wp, corr, sw, wsum, bias, in_scale, out, xq, rowq,
                                                           Kp, gelu)


def gemm_i32_kernel(xq, wp, corr, out, Kp):
    """Pure int8 GEMM: u8 rows xq (>= ceil(M/32)*32*Kp,) x packed w -> out (M, N) int32."""
    small = 2 * out.shape[0] * Kp * out.shape[1] < SERIAL_OPS
    return (_gemm_i32_serial if small else _gemm_i32_parallel)(xq, wp, corr, out, Kp)


@njit(**JIT_OPTS)
def _quantize_rows(x, xq, rowq, Kp, m0, m1, in_scale):
    """The shared row quantizer on rows m0..m1; returns the number of bad rows."""
    bad = 0
    for m in range(m0, m1):
        if not quantize_row(x, m, xq, m * Kp, SHIFT, Kp, in_scale, rowq):
            bad += 1
    return bad


@njit(**JIT_OPTS)
def _qlinear_serial(x, wp, corr, sw, wsum, bias, in_scale, out, xq, rowq, Kp, gelu):
    M = x.shape[0]
    N = out.shape[1]
    bad = _quantize_rows(x, xq, rowq, Kp, 0, M, in_scale)
    _task(xq, Kp, wp, corr, M, 0, (M + MR - 1) // MR, 0, (N + NR - 1) // NR, out, False, rowq, sw, wsum, bias, gelu)
    return bad


@njit(parallel=True, **JIT_OPTS)
def _qlinear_parallel(x, wp, corr, sw, wsum, bias, in_scale, out, xq, rowq, Kp, gelu):
    M = x.shape[0]
    N = out.shape[1]
    # 64 rows per parallel iteration: qlinear runs kernels with chunk size 1,
    # where one iteration per row costs more scheduling than quantizing.
    bad = 0
    for qb in prange((M + 63) // 64):
        bad += _quantize_rows(x, xq, rowq, Kp, qb * 64, min(qb * 64 + 64, M), in_scale)
    mbs, nbs, n_mt, n_nt = _split(M, N)
    n_mb = (M + MR - 1) // MR
    n_nb = (N + NR - 1) // NR
    # Task t -> (mt, nt), nt fastest: neighbouring tasks share a row panel.
    for t in prange(n_mt * n_nt):
        mt, nt = t // n_nt, t % n_nt
        mb0, nb0 = mt * mbs, nt * nbs
        _task(xq, Kp, wp, corr, M, mb0, min(mb0 + mbs, n_mb), nb0, min(nb0 + nbs, n_nb), out, False, rowq, sw, wsum,
              bias, gelu)
    return bad


@njit(**JIT_OPTS)
def _gemm_i32_serial(xq, wp, corr, out, Kp):
    M, N = out.shape
    none = np.empty(0, np.float32)
    none2 = np.empty((2, 0), np.float32)
    _task(xq, Kp, wp, corr, M, 0, (M + MR - 1) // MR, 0, (N + NR - 1) // NR, out, True, none2, none, none, none, False)


@njit(parallel=True, **JIT_OPTS)
def _gemm_i32_parallel(xq, wp, corr, out, Kp):
    M, N = out.shape
    mbs, nbs, n_mt, n_nt = _split(M, N)
    n_mb = (M + MR - 1) // MR
    n_nb = (N + NR - 1) // NR
    none = np.empty(0, np.float32)
    none2 = np.empty((2, 0), np.float32)
    for t in prange(n_mt * n_nt):
        mt, nt = t // n_nt, t % n_nt
        mb0, nb0 = mt * mbs, nt * nbs
        _task(xq, Kp, wp, corr, M, mb0, min(mb0 + mbs, n_mb), nb0, min(nb0 + nbs, n_nb), out, True, none2, none, none,
              none, False)


@njit(parallel=True, **JIT_OPTS)
def ffn_kernel(x, w1, corr1, sw1, wsum1, b1, in1, Kp1, w2, corr2, sw2, wsum2, b2, in2, Kp2,
               residual, gamma, beta, eps, out, panel, two_pass, h_s, xq1_s, xq2_s, rowq_s, o2_s, zeros2, ones1):
    """A whole BERT feed-forward block, one row panel per task:

        out = LayerNorm(residual + down(GELU(up(x))))

    x (M, K1) -> out (M, N2). Each panel of ``panel`` rows (a multiple of
    MR) is quantized, multiplied by the up weights, GELU'd into the
    thread's own hidden rows h_s[tid] (panel, N1), re-quantized, multiplied
    by the down weights and normalised by one thread while it is in L2;
    separate kernels would stream an (M, N1) float32 hidden state through
    memory twice. ``two_pass``: down runs as ``qlinear_int16`` (the hidden
    rows' quantization residual, re-quantized, through the same weights with
    no bias (zeros2) and no input scale (ones1), added to the first pass).
    Per-thread scratch: xq1_s (threads, panel*Kp1) and xq2_s (threads,
    panel*Kp2) u8, 64-byte aligned rows; rowq_s (threads, 3, 2, panel);
    o2_s (threads, panel, N2) for the second pass. Every step is the
    unfused steps' own arithmetic on the same rows (quantizer, tiles,
    epilogue, residual, ``norm.add_norm_rows``), so the result is
    bit-identical to them. Returns the number of bad (NaN/Inf) rows met in
    x or the hidden rows.
    """
    M = x.shape[0]
    N1 = h_s.shape[2]
    N2 = out.shape[1]
    bad = 0
    for p in prange((M + panel - 1) // panel):
        m0 = p * panel
        rows = min(panel, M - m0)
        tid = numba.get_thread_id()
        h = h_s[tid]
        xq1 = xq1_s[tid]
        xq2 = xq2_s[tid]
        o = out[m0 : m0 + rows]
        nmb = (rows + MR - 1) // MR
        bad_x = _quantize_rows(x[m0 : m0 + rows], xq1, rowq_s[tid, 0], Kp1, 0, rows, in1)
        _task(xq1, Kp1, w1, corr1, rows, 0, nmb, 0, (N1 + NR - 1) // NR, h, False, rowq_s[tid, 0], sw1, wsum1, b1,
              True)
        bad_h = _quantize_rows(h, xq2, rowq_s[tid, 1], Kp2, 0, rows, in2)
        _task(xq2, Kp2, w2, corr2, rows, 0, nmb, 0, (N2 + NR - 1) // NR, o, False, rowq_s[tid, 1], sw2, wsum2, b2,
              False)
        if two_pass:
            o2 = o2_s[tid]
            for m in range(rows):  # h becomes what the first pass's quantization lost of it
                residual_row(h, m, xq2, m * Kp2, SHIFT, in2, rowq_s[tid, 1], h)
            _quantize_rows(h, xq2, rowq_s[tid, 2], Kp2, 0, rows, ones1)
            _task(xq2, Kp2, w2, corr2, rows, 0, nmb, 0, (N2 + NR - 1) // NR, o2, False, rowq_s[tid, 2], sw2, wsum2,
                  zeros2, False)
            for m in range(rows):
                for n in range(N2):
                    o[m, n] += o2[m, n]
        add_norm_rows(o, residual[m0 : m0 + rows], 0, rows, gamma, beta, eps, o)
        bad += bad_x + bad_h  # one reduction statement (Numba's parfor rule)
    return bad

