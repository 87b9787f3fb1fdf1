"""Row kernels the task heads need beyond the encoder's: a plain LayerNorm.

Reference: ``runtime.reference.layernorm_ref``. The same row LayerNorm as
``norm.add_norm`` (float64 statistics, see ``norm._norm_row``).
"""
from __future__ import annotations

import numpy as np
from . import _jit  # noqa: F401,I001  (Numba with edgebert's settings first)
from numba import njit, prange

from .norm import _OPTS, _norm_row


@njit(parallel=True, **_OPTS)
def layer_norm(x, gamma, beta, eps, out):
    """out = LayerNorm(x) row by row; x, out (T, H) float32 (out may alias x)."""
    T, H = x.shape
    for t in prange(T):
        total = 0.0
        for k in range(H):
            v = x[t, k]
            out[t, k] = v
            total += np.float64(v)
        _norm_row(t, total, gamma, beta, eps, out)
