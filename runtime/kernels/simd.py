"""Target-independent LLVM vector helpers for the explicit-intrinsic kernels.

LLVM never emits ``vpdpbusd``/``vpmaddwd`` tiles from Numba loops on its own
(see shared notes), so the x86 kernels work on LLVM vector values directly.
This module only defines the vector types and generic IR operations (load,
splat, add, store, lane extract); the x86-specific dot-product intrinsics live
in ``gemm_vnni.py`` / ``gemm_avx2.py`` (x86) and ``gemm_neon_dot.py``
(aarch64) and are compiled only when selected.
"""

from . import _jit  # noqa: F401,I001  (Numba with edgebert's settings first)
from llvmlite import ir
from numba.core import cgutils, types
from numba.core.datamodel import models, register_default
from numba.extending import intrinsic


class I32Vec(types.Type):
    """An LLVM ``<lanes x i32>`` value that Numba keeps in a register."""

    def __init__(self, lanes):
        self.lanes = lanes
        super().__init__(name=f"i32x{lanes}")


@register_default(I32Vec)
class _I32VecModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, ir.VectorType(ir.IntType(32), fe_type.lanes))


I32X16 = I32Vec(16)  # one zmm register
I32X8 = I32Vec(8)  # one ymm register
I32X4 = I32Vec(4)  # one NEON q register


def _elem_ptr(context, builder, aryty, ary, idx):
    """Pointer to element ``idx`` of a 1-D C-contiguous array (no bounds check)."""
    arr = context.make_array(aryty)(context, builder, ary)
    return builder.gep(arr.data, [idx])


def make_ops(vt):
    """Build the generic intrinsics for vector type ``vt`` (an I32Vec)."""
    llvec = ir.VectorType(ir.IntType(32), vt.lanes)
    llf32 = ir.VectorType(ir.FloatType(), vt.lanes)

    @intrinsic
    def vzero(typingctx):
        def codegen(context, builder, sig, args):
            return ir.Constant(llvec, None)

        return vt(), codegen

    @intrinsic
    def vload(typingctx, ary, idx):
        """Unaligned load of ``lanes`` int32 words starting at element ``idx``."""

        def codegen(context, builder, sig, args):
            ptr = _elem_ptr(context, builder, sig.args[0], args[0], args[1])
            ptr = builder.bitcast(ptr, llvec.as_pointer())
            return builder.load(ptr, align=1)

        return vt(ary, idx), codegen

    @intrinsic
    def vbcast32(typingctx, ary, idx):
        """Splat the 4 bytes at element ``idx`` of a 1-byte array to every lane."""

        def codegen(context, builder, sig, args):
            ptr = _elem_ptr(context, builder, sig.args[0], args[0], args[1])
            ptr = builder.bitcast(ptr, ir.IntType(32).as_pointer())
            word = builder.load(ptr, align=1)
            one = builder.insert_element(ir.Constant(llvec, None), word, ir.Constant(ir.IntType(32), 0))
            mask = ir.Constant(ir.VectorType(ir.IntType(32), vt.lanes), [0] * vt.lanes)
            return builder.shuffle_vector(one, ir.Constant(llvec, None), mask)

        return vt(ary, idx), codegen

    @intrinsic
    def vstore_acc(typingctx, ary, idx, v, corr, cidx):
        """Store ``v - corr[cidx:cidx+lanes]`` at ``ary[idx]``, as float32 or int32.

        The int32 subtraction happens before any conversion, so a float32
        output is the exact accumulator rounded once, as in the reference.
        """
        to_float = isinstance(ary.dtype, types.Float)

        def codegen(context, builder, sig, args):
            cptr = _elem_ptr(context, builder, sig.args[3], args[3], args[4])
            c = builder.load(builder.bitcast(cptr, llvec.as_pointer()), align=1)
            r = builder.sub(args[2], c)
            if to_float:
                r = builder.sitofp(r, llf32)
            ptr = _elem_ptr(context, builder, sig.args[0], args[0], args[1])
            builder.store(r, builder.bitcast(ptr, r.type.as_pointer()), align=1)
            return context.get_dummy_value()

        return types.void(ary, idx, vt, corr, cidx), codegen

    @intrinsic
    def vlane(typingctx, v, i):
        """Lane ``i`` of ``v`` as int32 (for ragged tile edges only)."""

        def codegen(context, builder, sig, args):
            i32 = builder.trunc(args[1], ir.IntType(32)) if args[1].type.width > 32 else args[1]
            return builder.extract_element(args[0], i32)

        return types.int32(vt, i), codegen

    return vzero, vload, vbcast32, vstore_acc, vlane


def make_dequant_store(vt):
    """``vstore_out`` for vector type ``vt``: the GEMM epilogue on a register of accumulators.

    ``vstore_out(out, idx, v, corr, cidx, rowq, m, sw, wsum, bias)`` stores at ``out[idx:]``,
    for the ``lanes`` columns n = cidx..:
    - int32 out: ``v - corr[n]`` (the pure GEMM; rowq, sw, wsum, bias may be None);
    - float32 out: ``float32(v - corr[n]) * (sa * sw[n]) + (c * wsum[n] + bias[n])`` with
      sa, c = rowq[0, m], rowq[1, m]: ``gemm_portable.finish_row``'s formula step for step
      (each product and sum rounded once, no FMA contraction), so the bits are the reference's.
    One intrinsic rather than a jitted helper per row: it lowers to a few vector instructions
    in the caller, where a helper holding the arrays cost NRT reference counting (atomic
    increments and calls) per tile row, which took longer than the stores.
    """
    llvec = ir.VectorType(ir.IntType(32), vt.lanes)
    llf32 = ir.VectorType(ir.FloatType(), vt.lanes)
    zeros = ir.Constant(ir.VectorType(ir.IntType(32), vt.lanes), [0] * vt.lanes)

    def _load(context, builder, aryty, ary, idx, ty):
        ptr = _elem_ptr(context, builder, aryty, ary, idx)
        return builder.load(builder.bitcast(ptr, ty.as_pointer()), align=1)

    def _splat(builder, x):
        one = builder.insert_element(ir.Constant(llf32, None), x, ir.Constant(ir.IntType(32), 0))
        return builder.shuffle_vector(one, ir.Constant(llf32, None), zeros)

    @intrinsic
    def vstore_out(typingctx, ary, idx, v, corr, cidx, rowq, m, sw, wsum, bias):
        to_float = ary.dtype == types.float32
        if not (to_float or ary.dtype == types.int32):
            return None

        def codegen(context, builder, sig, args):
            ary_t, _, _, corr_t, _, rowq_t, _, sw_t, wsum_t, bias_t = sig.args
            out, i, acc, cor, ci, rq, m_i, sw_a, wsum_a, bias_a = args
            r = builder.sub(acc, _load(context, builder, corr_t, cor, ci, llvec))
            if to_float:
                row = context.make_array(rowq_t)(context, builder, rq)
                ptr = [cgutils.get_item_pointer(context, builder, rowq_t, row, [ir.Constant(m_i.type, k), m_i])
                       for k in (0, 1)]
                sa, c = builder.load(ptr[0]), builder.load(ptr[1])
                scale = builder.fmul(_splat(builder, sa), _load(context, builder, sw_t, sw_a, ci, llf32))
                shift = builder.fmul(_splat(builder, c), _load(context, builder, wsum_t, wsum_a, ci, llf32))
                shift = builder.fadd(shift, _load(context, builder, bias_t, bias_a, ci, llf32))
                r = builder.fadd(builder.fmul(builder.sitofp(r, llf32), scale), shift)
            ptr = _elem_ptr(context, builder, ary_t, out, i)
            builder.store(r, builder.bitcast(ptr, r.type.as_pointer()), align=1)
            return context.get_dummy_value()

        return types.void(ary, idx, vt, corr, cidx, rowq, m, sw, wsum, bias), codegen

    return vstore_out


@intrinsic
def prefetch(typingctx, ary, idx):
    """Prefetch the cache line holding element ``idx`` of a 1-D array into L1 (a hint: never
    faults, so an index past the end is harmless)."""

    def codegen(context, builder, sig, args):
        i8p = ir.IntType(8).as_pointer()
        ptr = builder.bitcast(_elem_ptr(context, builder, sig.args[0], args[0], args[1]), i8p)
        i32 = ir.IntType(32)
        fn = declare_intrinsic(builder, "llvm.prefetch.p0", ir.VoidType(), [i8p, i32, i32, i32])
        builder.call(fn, [ptr, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])  # read, keep, data
        return context.get_dummy_value()

    return types.void(ary, idx), codegen


def declare_intrinsic(builder, name, ret, argtys):
    """Get or declare the LLVM intrinsic ``name`` in the current module."""
    mod = builder.module
    fnty = ir.FunctionType(ret, argtys)
    return cgutils.get_or_insert_function(mod, fnty, name)
