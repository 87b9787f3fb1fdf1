"""Gated feed-forward activation (GeGLU, as ModernBERT's MLP): out = GELU(x[:, :F]) * x[:, F:].

The up projection emits input and gate side by side, (T, 2F); this halves it
to (T, F) before the down projection. The GELU is the GEMM epilogue's float32
one (``gemm_portable.gelu32``, within ``GELU_MAX_ERR`` of erf GELU); each row
is one thread's, so results do not depend on the thread count.
Reference: ``runtime.reference.geglu_ref``.
"""
from __future__ import annotations

from . import _jit  # noqa: F401,I001  (Numba with edgebert's settings first)
from numba import njit, prange

from .gemm_portable import JIT_OPTS, gelu32


@njit(parallel=True, **JIT_OPTS)
def geglu(x, out):
    """out (T, F) = GELU(x[:, :F]) * x[:, F:]; x (T, 2F) float32."""
    F = out.shape[1]
    for t in prange(x.shape[0]):
        for j in range(F):
            out[t, j] = gelu32(x[t, j]) * x[t, F + j]
