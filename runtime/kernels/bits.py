"""Scalar float32 <-> int32 bit reinterpretation for Numba kernels.

A plain LLVM bitcast: free, and LLVM vectorises loops that use it (bit
tricks for exp and for order-preserving min/max keys).
"""
from . import _jit  # noqa: F401,I001  (Numba with edgebert's settings first)
from llvmlite import ir
from numba import types
from numba.extending import intrinsic


@intrinsic
def f32_bits(typingctx, x):
    """The IEEE-754 bits of a float32, as int32."""
    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.IntType(32))
    return types.int32(types.float32), codegen


@intrinsic
def bits_f32(typingctx, x):
    """The float32 whose bits are the int32 ``x``."""
    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.int32), codegen
