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


def declare_intrinsic(builder, name, ret, argtys):
    """Get or declare the LLVM intrinsic ``name`` in the current module."""
    mod = builder.module
    fnty = ir.FunctionType(ret, argtys)
    return cgutils.get_or_insert_function(mod, fnty, name)
