"""Multi-head self-attention over packed sequences (no compute on padding).

One work item is one (sequence, head) pair, done by one thread start to end,
so results do not depend on the thread count or on the other sequences (the
code path, and so the float order, is the same whoever runs it: it depends
only on the sequence length and the head size).

Per item, in per-thread scratch (never an (L, L) matrix per head):

* K^T (d, Lp) in panels of 16 keys ((Lp / 16, d, 16): each score tile
  reads one contiguous 2 KiB panel; a plain (d, Lp) layout puts the 32 rows
  of a tile a power of two apart, in the same few L1 sets), pre-multiplied by
  1/sqrt(d); Lp = L rounded up to 16. The padding keys are copies of key 0,
  so padded scores equal a real score and the row max needs no mask.
* V (Lp, dp) row-major, dp = d rounded up to 32, zero padding.
* scores of a block of QB=8 queries (QB, Lp).

With a relative position bias (``item_attention(biased=True)``, relative.py), each score tile gets
its 16 contiguous biases by distance added, and the padding keys' scores a -1e30 mask (theirs would
carry another distance's bias).

Queries go QB at a time (the last block repeats the last query; its extra
rows are never written). Scores are an 8 x 16 register tile: each K^T vector
load feeds 8 FMAs against broadcast query elements, and the row max is kept
on the fly. Softmax: exp(x - max) by a degree-6 polynomial over 16-lane
vectors, summed in one vector. Context is an 8 x 32 register tile: each V row
(two vectors) feeds 16 FMAs against broadcast probabilities.

The inner loops work on explicit LLVM ``<16 x float>`` values (a zmm register
with AVX-512; LLVM splits it into narrower registers elsewhere), since the
loop vectoriser cannot keep a register tile across the reduction loop.
Reference: ``runtime.reference.attention_ref``.
"""
from __future__ import annotations

import math

from . import _jit  # noqa: F401,I001  (Numba with edgebert's settings first)
import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange
from numba.core import cgutils, types
from numba.core.datamodel import models, register_default
from numba.extending import intrinsic

from .attention_layout import CB, QB, W, make_scratch, scratch_size  # noqa: F401  (binders size scratch with these)
# exp(x) for x <= 0 as 2^k * p(r), k = round(x / ln 2), r = x - k ln 2 in
# [-ln2/2, ln2/2], p the degree-6 Taylor polynomial: relative error < 5e-7.
# Below -87 the result would be denormal; it is clamped (weight < 2e-38).
_LOG2E = np.float32(1.4426950408889634)
_LN2_HI = np.float32(0.693359375)
_LN2_LO = np.float32(-2.12194440e-4)
_EXP_MIN = np.float32(-87.0)


# ---------------------------------------------------------------- vectors --

class _F32Vec(types.Type):
    """An LLVM ``<16 x float>`` value that Numba keeps in registers."""

    def __init__(self):
        super().__init__(name="attention_f32x16")


F32X16 = _F32Vec()
_LLV = ir.VectorType(ir.FloatType(), W)
_I32 = ir.IntType(32)
_LLI = ir.VectorType(_I32, W)


@register_default(_F32Vec)
class _F32VecModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _LLV)


def _ptr(context, builder, aryty, ary, inds):
    """Pointer to an element (no wraparound, no bounds check); inds: one index per dimension."""
    arr = context.make_array(aryty)(context, builder, ary)
    return cgutils.get_item_pointer(context, builder, aryty, arr, inds)


def _call(builder, name, args, ret=_LLV):
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ret, [a.type for a in args]), name)
    return builder.call(fn, args)


def _const(x):
    return ir.Constant(_LLV, [float(np.float32(x))] * W)


def _splat(builder, x):
    one = builder.insert_element(ir.Constant(_LLV, None), x, ir.Constant(_I32, 0))
    return builder.shuffle_vector(one, ir.Constant(_LLV, None), ir.Constant(_LLI, [0] * W))


def _index_types(ary, inds):
    return isinstance(ary, types.Array) and ary.dtype == types.float32 and len(inds) == ary.ndim \
        and all(isinstance(i, types.Integer) for i in inds)


@intrinsic
def vzero(typingctx):
    def codegen(context, builder, sig, args):
        return ir.Constant(_LLV, None)
    return F32X16(), codegen


@intrinsic
def vload(typingctx, ary, i):
    """ary[i:i + 16] of a 1-D float32 array with unit stride."""
    if not _index_types(ary, (i,)):
        return None

    def codegen(context, builder, sig, args):
        p = _ptr(context, builder, sig.args[0], args[0], [args[1]])
        return builder.load(builder.bitcast(p, _LLV.as_pointer()), align=4)
    return F32X16(ary, i), codegen


@intrinsic
def vstore(typingctx, ary, i, v):
    """ary[i:i + 16] = v (1-D float32, unit stride)."""
    if not _index_types(ary, (i,)):
        return None

    def codegen(context, builder, sig, args):
        p = _ptr(context, builder, sig.args[0], args[0], [args[1]])
        builder.store(args[2], builder.bitcast(p, _LLV.as_pointer()), align=4)
        return context.get_dummy_value()
    return types.void(ary, i, v), codegen


@intrinsic
def vstore_scaled2(typingctx, ary, i, j, v, s):
    """ary[i, j:j + 16] = v * s (2-D float32 whose rows have unit stride)."""
    if not _index_types(ary, (i, j)):
        return None

    def codegen(context, builder, sig, args):
        p = _ptr(context, builder, sig.args[0], args[0], [args[1], args[2]])
        builder.store(builder.fmul(args[3], _splat(builder, args[4])), builder.bitcast(p, _LLV.as_pointer()), align=4)
        return context.get_dummy_value()
    return types.void(ary, i, j, v, types.float32), codegen


@intrinsic
def vbcast(typingctx, ary, i):
    """ary[i] in every lane (1-D float32)."""
    if not _index_types(ary, (i,)):
        return None

    def codegen(context, builder, sig, args):
        return _splat(builder, builder.load(_ptr(context, builder, sig.args[0], args[0], [args[1]]), align=4))
    return F32X16(ary, i), codegen


@intrinsic
def vbcast2(typingctx, ary, i, j):
    """ary[i, j] in every lane (2-D float32)."""
    if not _index_types(ary, (i, j)):
        return None

    def codegen(context, builder, sig, args):
        return _splat(builder, builder.load(_ptr(context, builder, sig.args[0], args[0], [args[1], args[2]]), align=4))
    return F32X16(ary, i, j), codegen


@intrinsic
def vfma(typingctx, a, b, c):
    """a * b + c lanewise (fused where the target has FMA)."""
    def codegen(context, builder, sig, args):
        return _call(builder, "llvm.fmuladd.v16f32", list(args))
    return F32X16(F32X16, F32X16, F32X16), codegen


@intrinsic
def vadd(typingctx, a, b):
    def codegen(context, builder, sig, args):
        return builder.fadd(args[0], args[1])
    return F32X16(F32X16, F32X16), codegen


def _max(builder, a, b):
    return builder.select(builder.fcmp_ordered(">", a, b), a, b)


@intrinsic
def vmax(typingctx, a, b):
    def codegen(context, builder, sig, args):
        return _max(builder, args[0], args[1])
    return F32X16(F32X16, F32X16), codegen


def _reduce(builder, v, op):
    """Fixed halving tree over the lanes (the same order on every call)."""
    n = W
    while n > 1:
        n //= 2
        lo = builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(_I32, n), list(range(n))))
        hi = builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(_I32, n), list(range(n, 2 * n))))
        v = op(lo, hi)
    return builder.extract_element(v, ir.Constant(_I32, 0))


@intrinsic
def vhmax(typingctx, v):
    def codegen(context, builder, sig, args):
        return _reduce(builder, args[0], lambda a, b: _max(builder, a, b))
    return types.float32(F32X16), codegen


@intrinsic
def vhsum(typingctx, v):
    def codegen(context, builder, sig, args):
        return _reduce(builder, args[0], builder.fadd)
    return types.float32(F32X16), codegen


@intrinsic
def vexp_shifted(typingctx, x, m):
    """exp(x - m) lanewise for x <= m: 2^k p(r), the argument clamped at -87."""
    def codegen(context, builder, sig, args):
        x = builder.fsub(args[0], _splat(builder, args[1]))
        x = _max(builder, x, _const(_EXP_MIN))
        # k = round(x log2 e) = -trunc(0.5 - x log2 e), the operand being > 0
        k = builder.neg(builder.fptosi(builder.fsub(_const(0.5), builder.fmul(x, _const(_LOG2E))), _LLI))
        kf = builder.sitofp(k, _LLV)
        r = builder.fsub(builder.fsub(x, builder.fmul(kf, _const(_LN2_HI))), builder.fmul(kf, _const(_LN2_LO)))
        p = _const(1.0 / 720)
        for coef in (1.0 / 120, 1.0 / 24, 1.0 / 6, 0.5, 1.0, 1.0):
            p = _call(builder, "llvm.fmuladd.v16f32", [r, p, _const(coef)])
        two_k = builder.bitcast(builder.shl(builder.add(k, ir.Constant(_LLI, [127] * W)), ir.Constant(_LLI, [23] * W)), _LLV)
        return builder.fmul(p, two_k)
    return F32X16(F32X16, types.float32), codegen


# ----------------------------------------------------------------- kernel --

def _target_has_zmm() -> bool:
    """Whether the CPU Numba compiles for has 32 512-bit registers (AVX-512), from the same
    features it compiles with (NUMBA_CPU_FEATURES where set, as the native build sets them)."""
    from llvmlite import binding as llvm

    feats = numba.core.config.CPU_FEATURES or llvm.get_host_cpu_features().flatten()
    return "+avx512f" in feats.split(",")


# Register tiles of 4 queries (and 16 context columns) instead of 8 (and 32) where a 16-lane
# vector takes two registers or more (AVX2: 2 of 16 ymm; NEON: 4 of 32): there the 8-query
# tiles spilled (16 ymm of score accumulators, 32 of context ones). Every output element is
# the same chain of FMAs in the same order either way, so the bits do not change.
NARROW = not _target_has_zmm()

@njit(cache=True, nogil=True, parallel=True, fastmath=True)
def attention(qkv, seq_offsets, num_heads, out, scratch):
    """qkv (T, 3H) float32 [q | k | v], seq_offsets (B+1,) -> out (T, H) float32.

    scratch: (threads, scratch_size(max_len, d)) float32, reused across calls.
    qkv and out rows must have unit stride (any C-contiguous array or row slice).
    """
    T, H3 = qkv.shape
    H = H3 // 3
    d = H // num_heads
    if qkv.strides[1] != 4 or out.strides[1] != 4:
        raise ValueError("attention: qkv and out rows need unit stride")
    B = seq_offsets.shape[0] - 1
    for item in prange(B * num_heads):
        b, h = item // num_heads, item % num_heads
        s, e = seq_offsets[b], seq_offsets[b + 1]
        if e > s:
            buf = scratch[numba.get_thread_id()]
            item_attention(qkv, s, e - s, h, H, d, out, buf, buf, 0, False)


@njit(cache=True, nogil=True, parallel=True, fastmath=True)
def relative_attention(qkv, seq_offsets, num_heads, by_distance, centre, out, scratch):
    """qkv (T, 3H) float32 [q | k | v], seq_offsets (B+1,) -> out (T, H) float32.

    by_distance (nh, C), centre: bias of distance j - i at column centre + j - i (needs
    centre >= L - 1 and centre + L rounded up to 16 <= C for every sequence length L); scratch
    (threads, scratch_size(max_len, d)) float32. qkv and out rows need unit stride.
    """
    T, H3 = qkv.shape
    H = H3 // 3
    d = H // num_heads
    B = seq_offsets.shape[0] - 1
    if qkv.strides[1] != 4 or out.strides[1] != 4:
        raise ValueError("relative_attention: qkv and out rows need unit stride")
    for b in range(B):
        L = seq_offsets[b + 1] - seq_offsets[b]
        Lp = (L + W - 1) // W * W
        if L - 1 > centre or centre + Lp > by_distance.shape[1] or relative_scratch_words(L, d) > scratch.shape[1]:
            raise ValueError("relative_attention: a sequence is longer than the bias table or scratch")
    for item in prange(B * num_heads):
        b, h = item // num_heads, item % num_heads
        s, e = seq_offsets[b], seq_offsets[b + 1]
        if e > s:
            item_attention(qkv, s, e - s, h, H, d, out, scratch[numba.get_thread_id()], by_distance[h], centre, True)


@njit(cache=True, nogil=True)
def relative_scratch_words(L, d):
    """attention_layout.scratch_size in the kernel (L tokens, head width d)."""
    lp, dp = (max(L, 1) + W - 1) // W * W, (d + CB - 1) // CB * CB
    return d * lp + lp * dp + QB * lp + QB * CB + QB + W


@njit(cache=True, nogil=True, fastmath=True)
def item_attention(qkv, s, L, h, H, d, out, buf, bias, centre, biased):
    """One (sequence, head) item: rows s..s+L of qkv, head h (width d of H) -> out; buf: this thread's
    scratch row. ``biased``: each score of query i and key j gets bias[centre + j - i] added (a relative
    position bias by distance, relative.py; ``bias`` needs centre + Lp columns, Lp = L rounded up to 16);
    else ``bias`` is not read."""
    dp = (d + CB - 1) // CB * CB
    scale = np.float32(1.0 / math.sqrt(d))
    Lp = (L + W - 1) // W * W
    qo, ko, vo = h * d, H + h * d, 2 * H + h * d
    VO = d * Lp  # V (Lp, dp)
    SO = VO + Lp * dp  # scores (QB, Lp)
    TO = SO + QB * Lp  # context tile (QB, CB), for ragged d only
    IO = TO + QB * CB  # 1/sum per block row
    MO = IO + QB  # biased only: the last key block's padding mask (0 for keys, -1e30 past them)
    if biased:  # padded keys' scores would carry another distance's bias: not a real score, so masked
        for t in range(W):
            buf[MO + t] = 0.0 if Lp - W + t < L else np.float32(-1e30)
    # Copies through 1-D row views (no 2-D index arithmetic per element):
    # K^T row by row, V by explicit vectors where d is a multiple of 16.
    for j in range(L):
        row = qkv[s + j]
        o = (j // W) * W * d + j % W
        for c in range(d):
            buf[o + c * W] = row[ko + c] * scale
        if d % W == 0:
            for c in range(0, d, W):
                vstore(buf, VO + j * dp + c, vload(row, vo + c))
        else:
            for c in range(d):
                buf[VO + j * dp + c] = row[vo + c]
        for c in range(d, dp):
            buf[VO + j * dp + c] = 0.0
    for j in range(L, Lp):
        for c in range(d):
            buf[(j // W) * W * d + c * W + j % W] = buf[c * W]  # key 0 again: a real score, so the max is exact
        for c in range(dp):
            buf[VO + j * dp + c] = 0.0
    for i0 in range(0, L, QB):
        r0 = s + i0
        r1 = s + min(i0 + 1, L - 1)
        r2 = s + min(i0 + 2, L - 1)
        r3 = s + min(i0 + 3, L - 1)
        r4 = s + min(i0 + 4, L - 1)
        r5 = s + min(i0 + 5, L - 1)
        r6 = s + min(i0 + 6, L - 1)
        r7 = s + min(i0 + 7, L - 1)
        if NARROW:  # scores, tiles of 4 queries x 16 keys, with the running row max
            for g in range(0, QB, 4):
                q0 = s + min(i0 + g, L - 1)
                q1 = s + min(i0 + g + 1, L - 1)
                q2 = s + min(i0 + g + 2, L - 1)
                q3 = s + min(i0 + g + 3, L - 1)
                so = SO + g * Lp
                m0 = m1 = m2 = m3 = vzero()
                for jb in range(0, Lp, W):
                    a0 = vzero(); a1 = vzero(); a2 = vzero(); a3 = vzero()  # noqa: E702
                    kb = jb * d
                    for c in range(d):
                        k = vload(buf, kb + c * W)
                        a0 = vfma(vbcast2(qkv, q0, qo + c), k, a0)
                        a1 = vfma(vbcast2(qkv, q1, qo + c), k, a1)
                        a2 = vfma(vbcast2(qkv, q2, qo + c), k, a2)
                        a3 = vfma(vbcast2(qkv, q3, qo + c), k, a3)
                    if biased:  # + bias[centre + j - i], contiguous in j
                        a0 = vadd(a0, vload(bias, centre + jb - (q0 - s)))
                        a1 = vadd(a1, vload(bias, centre + jb - (q1 - s)))
                        a2 = vadd(a2, vload(bias, centre + jb - (q2 - s)))
                        a3 = vadd(a3, vload(bias, centre + jb - (q3 - s)))
                        if jb + W > L:
                            mask = vload(buf, MO)
                            a0 = vadd(a0, mask); a1 = vadd(a1, mask); a2 = vadd(a2, mask); a3 = vadd(a3, mask)  # noqa: E702
                    if jb == 0:
                        m0 = a0; m1 = a1; m2 = a2; m3 = a3  # noqa: E702
                    else:
                        m0 = vmax(m0, a0); m1 = vmax(m1, a1); m2 = vmax(m2, a2); m3 = vmax(m3, a3)  # noqa: E702
                    vstore(buf, so + jb, a0)
                    vstore(buf, so + Lp + jb, a1)
                    vstore(buf, so + 2 * Lp + jb, a2)
                    vstore(buf, so + 3 * Lp + jb, a3)
                buf[IO + g] = vhmax(m0); buf[IO + g + 1] = vhmax(m1)  # noqa: E702
                buf[IO + g + 2] = vhmax(m2); buf[IO + g + 3] = vhmax(m3)  # noqa: E702
        else:  # scores, tile QB x 16, with the running row max
            m0 = m1 = m2 = m3 = m4 = m5 = m6 = m7 = vzero()
            for jb in range(0, Lp, W):
                a0 = vzero(); a1 = vzero(); a2 = vzero(); a3 = vzero()  # noqa: E702
                a4 = vzero(); a5 = vzero(); a6 = vzero(); a7 = vzero()  # noqa: E702
                kb = jb * d
                for c in range(d):
                    k = vload(buf, kb + c * W)
                    a0 = vfma(vbcast2(qkv, r0, qo + c), k, a0)
                    a1 = vfma(vbcast2(qkv, r1, qo + c), k, a1)
                    a2 = vfma(vbcast2(qkv, r2, qo + c), k, a2)
                    a3 = vfma(vbcast2(qkv, r3, qo + c), k, a3)
                    a4 = vfma(vbcast2(qkv, r4, qo + c), k, a4)
                    a5 = vfma(vbcast2(qkv, r5, qo + c), k, a5)
                    a6 = vfma(vbcast2(qkv, r6, qo + c), k, a6)
                    a7 = vfma(vbcast2(qkv, r7, qo + c), k, a7)
                if biased:
                    a0 = vadd(a0, vload(bias, centre + jb - (r0 - s)))
                    a1 = vadd(a1, vload(bias, centre + jb - (r1 - s)))
                    a2 = vadd(a2, vload(bias, centre + jb - (r2 - s)))
                    a3 = vadd(a3, vload(bias, centre + jb - (r3 - s)))
                    a4 = vadd(a4, vload(bias, centre + jb - (r4 - s)))
                    a5 = vadd(a5, vload(bias, centre + jb - (r5 - s)))
                    a6 = vadd(a6, vload(bias, centre + jb - (r6 - s)))
                    a7 = vadd(a7, vload(bias, centre + jb - (r7 - s)))
                    if jb + W > L:
                        mask = vload(buf, MO)
                        a0 = vadd(a0, mask); a1 = vadd(a1, mask); a2 = vadd(a2, mask); a3 = vadd(a3, mask)  # noqa: E702
                        a4 = vadd(a4, mask); a5 = vadd(a5, mask); a6 = vadd(a6, mask); a7 = vadd(a7, mask)  # noqa: E702
                if jb == 0:
                    m0 = a0; m1 = a1; m2 = a2; m3 = a3; m4 = a4; m5 = a5; m6 = a6; m7 = a7  # noqa: E702
                else:
                    m0 = vmax(m0, a0); m1 = vmax(m1, a1); m2 = vmax(m2, a2); m3 = vmax(m3, a3)  # noqa: E702
                    m4 = vmax(m4, a4); m5 = vmax(m5, a5); m6 = vmax(m6, a6); m7 = vmax(m7, a7)  # noqa: E702
                vstore(buf, SO + jb, a0)
                vstore(buf, SO + Lp + jb, a1)
                vstore(buf, SO + 2 * Lp + jb, a2)
                vstore(buf, SO + 3 * Lp + jb, a3)
                vstore(buf, SO + 4 * Lp + jb, a4)
                vstore(buf, SO + 5 * Lp + jb, a5)
                vstore(buf, SO + 6 * Lp + jb, a6)
                vstore(buf, SO + 7 * Lp + jb, a7)
            buf[IO] = vhmax(m0); buf[IO + 1] = vhmax(m1); buf[IO + 2] = vhmax(m2)  # noqa: E702
            buf[IO + 3] = vhmax(m3); buf[IO + 4] = vhmax(m4); buf[IO + 5] = vhmax(m5)  # noqa: E702
            buf[IO + 6] = vhmax(m6); buf[IO + 7] = vhmax(m7)  # noqa: E702
        # softmax numerators in place, padding zeroed; 1/sum per row
        for r in range(QB):
            ro = SO + r * Lp
            m = buf[IO + r]
            acc = vzero()
            last = ro + Lp - W
            for jb in range(ro, last, W):
                x = vexp_shifted(vload(buf, jb), m)
                vstore(buf, jb, x)
                acc = vadd(acc, x)
            vstore(buf, last, vexp_shifted(vload(buf, last), m))
            for j in range(ro + L, ro + Lp):
                buf[j] = 0.0
            acc = vadd(acc, vload(buf, last))
            buf[IO + r] = np.float32(1.0) / vhsum(acc)
        if NARROW:  # context, tiles of 4 queries x 16 columns
            nq = min(QB, L - i0)
            for cb in range(0, dp, CB):
                full = cb + CB <= d and nq == QB
                for g in range(0, QB, 4):
                    so = SO + g * Lp
                    for half in range(0, CB, W):
                        col = VO + cb + half
                        c0 = vzero(); c1 = vzero(); c2 = vzero(); c3 = vzero()  # noqa: E702
                        for j in range(Lp):
                            v = vload(buf, col + j * dp)
                            c0 = vfma(vbcast(buf, so + j), v, c0)
                            c1 = vfma(vbcast(buf, so + Lp + j), v, c1)
                            c2 = vfma(vbcast(buf, so + 2 * Lp + j), v, c2)
                            c3 = vfma(vbcast(buf, so + 3 * Lp + j), v, c3)
                        if full:
                            oc, r = qo + cb + half, s + i0 + g
                            vstore_scaled2(out, r, oc, c0, buf[IO + g])
                            vstore_scaled2(out, r + 1, oc, c1, buf[IO + g + 1])
                            vstore_scaled2(out, r + 2, oc, c2, buf[IO + g + 2])
                            vstore_scaled2(out, r + 3, oc, c3, buf[IO + g + 3])
                        else:
                            to = TO + g * CB + half
                            vstore(buf, to, c0)
                            vstore(buf, to + CB, c1)
                            vstore(buf, to + 2 * CB, c2)
                            vstore(buf, to + 3 * CB, c3)
                if not full:  # ragged: through the tile, the same products rounded the same way
                    for r in range(nq):
                        inv = buf[IO + r]
                        for c in range(cb, min(cb + CB, d)):
                            out[s + i0 + r, qo + c] = buf[TO + r * CB + c - cb] * inv
        else:  # context, tile QB x 32
            for cb in range(0, dp, CB):
                c0 = vzero(); c1 = vzero(); c2 = vzero(); c3 = vzero()  # noqa: E702
                c4 = vzero(); c5 = vzero(); c6 = vzero(); c7 = vzero()  # noqa: E702
                e0 = vzero(); e1 = vzero(); e2 = vzero(); e3 = vzero()  # noqa: E702
                e4 = vzero(); e5 = vzero(); e6 = vzero(); e7 = vzero()  # noqa: E702
                for j in range(Lp):
                    v0 = vload(buf, VO + j * dp + cb)
                    v1 = vload(buf, VO + j * dp + cb + W)
                    p = vbcast(buf, SO + j)
                    c0 = vfma(p, v0, c0); e0 = vfma(p, v1, e0)  # noqa: E702
                    p = vbcast(buf, SO + Lp + j)
                    c1 = vfma(p, v0, c1); e1 = vfma(p, v1, e1)  # noqa: E702
                    p = vbcast(buf, SO + 2 * Lp + j)
                    c2 = vfma(p, v0, c2); e2 = vfma(p, v1, e2)  # noqa: E702
                    p = vbcast(buf, SO + 3 * Lp + j)
                    c3 = vfma(p, v0, c3); e3 = vfma(p, v1, e3)  # noqa: E702
                    p = vbcast(buf, SO + 4 * Lp + j)
                    c4 = vfma(p, v0, c4); e4 = vfma(p, v1, e4)  # noqa: E702
                    p = vbcast(buf, SO + 5 * Lp + j)
                    c5 = vfma(p, v0, c5); e5 = vfma(p, v1, e5)  # noqa: E702
                    p = vbcast(buf, SO + 6 * Lp + j)
                    c6 = vfma(p, v0, c6); e6 = vfma(p, v1, e6)  # noqa: E702
                    p = vbcast(buf, SO + 7 * Lp + j)
                    c7 = vfma(p, v0, c7); e7 = vfma(p, v1, e7)  # noqa: E702
                nq = min(QB, L - i0)
                oc = qo + cb
                if cb + CB <= d and nq == QB:
                    vstore_scaled2(out, r0, oc, c0, buf[IO]); vstore_scaled2(out, r0, oc + W, e0, buf[IO])  # noqa: E702
                    vstore_scaled2(out, r1, oc, c1, buf[IO + 1]); vstore_scaled2(out, r1, oc + W, e1, buf[IO + 1])  # noqa: E702,E501
                    vstore_scaled2(out, r2, oc, c2, buf[IO + 2]); vstore_scaled2(out, r2, oc + W, e2, buf[IO + 2])  # noqa: E702,E501
                    vstore_scaled2(out, r3, oc, c3, buf[IO + 3]); vstore_scaled2(out, r3, oc + W, e3, buf[IO + 3])  # noqa: E702,E501
                    vstore_scaled2(out, r4, oc, c4, buf[IO + 4]); vstore_scaled2(out, r4, oc + W, e4, buf[IO + 4])  # noqa: E702,E501
                    vstore_scaled2(out, r5, oc, c5, buf[IO + 5]); vstore_scaled2(out, r5, oc + W, e5, buf[IO + 5])  # noqa: E702,E501
                    vstore_scaled2(out, r6, oc, c6, buf[IO + 6]); vstore_scaled2(out, r6, oc + W, e6, buf[IO + 6])  # noqa: E702,E501
                    vstore_scaled2(out, r7, oc, c7, buf[IO + 7]); vstore_scaled2(out, r7, oc + W, e7, buf[IO + 7])  # noqa: E702,E501
                else:  # ragged: through the tile, the same products rounded the same way
                    vstore(buf, TO, c0); vstore(buf, TO + W, e0)  # noqa: E702
                    vstore(buf, TO + CB, c1); vstore(buf, TO + CB + W, e1)  # noqa: E702
                    vstore(buf, TO + 2 * CB, c2); vstore(buf, TO + 2 * CB + W, e2)  # noqa: E702
                    vstore(buf, TO + 3 * CB, c3); vstore(buf, TO + 3 * CB + W, e3)  # noqa: E702
                    vstore(buf, TO + 4 * CB, c4); vstore(buf, TO + 4 * CB + W, e4)  # noqa: E702
                    vstore(buf, TO + 5 * CB, c5); vstore(buf, TO + 5 * CB + W, e5)  # noqa: E702
                    vstore(buf, TO + 6 * CB, c6); vstore(buf, TO + 6 * CB + W, e6)  # noqa: E702
                    vstore(buf, TO + 7 * CB, c7); vstore(buf, TO + 7 * CB + W, e7)  # noqa: E702
                    for r in range(nq):
                        inv = buf[IO + r]
                        for c in range(cb, min(cb + CB, d)):
                            out[s + i0 + r, qo + c] = buf[TO + r * CB + c - cb] * inv
