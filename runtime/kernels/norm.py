"""Row kernels: fused residual add + LayerNorm, and the embedding sum + LayerNorm.

Each row is done by one thread start to end, so the result does not depend
on the thread count or on the other rows. The summed row is written to
``out`` first and normalised there in place (no per-row allocation).
Statistics are float64: the mean (summed while the row is written), then
the mean squared deviation (two passes, no cancellation), each a reduction
that ``reassoc`` lets LLVM split into vector lanes. That order is fixed by
the compiled code, so results are deterministic on a given machine; no
other fast-math flag is used (no FMA contraction: the float32 sums round
as in the references).
References: ``runtime.reference.add_norm_ref`` and ``embed_ref``.
"""
from __future__ import annotations

import numpy as np
from . import _jit  # noqa: F401,I001  (Numba with edgebert's settings first)
from numba import njit, prange

# reassoc only, for the two float64 sums ("contract" would fuse embed's
# float32 word * scale + position); error_model="numpy" drops the division
# checks whose branches would stop vectorisation.
_OPTS = dict(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc"})


@njit(inline="always", **_OPTS)
def _norm_row(t, total, gamma, beta, eps, out):
    """out[t] = LayerNorm(out[t]) in place, given total = sum(out[t]) in float64.

    Everything after the float32 input row is float64, as in the reference,
    so the float32 results round alike (a float32 output pass was 2x faster
    and within 1e-6, but its ulp differences flip downstream quantization
    steps against the reference backend).
    """
    n = out.shape[1]
    mean = total / n
    sq = 0.0
    for k in range(n):
        d = np.float64(out[t, k]) - mean
        sq += d * d
    inv = 1.0 / np.sqrt(sq / n + eps)
    for k in range(n):
        out[t, k] = np.float32((np.float64(out[t, k]) - mean) * inv * np.float64(gamma[k]) + np.float64(beta[k]))


@njit(inline="always", **_OPTS)
def add_norm_row(x, residual, t, gamma, beta, eps, out):
    """out[t] = LayerNorm(x[t] + residual[t]); out may alias x."""
    H = x.shape[1]
    total = 0.0
    for k in range(H):
        v = x[t, k] + residual[t, k]
        out[t, k] = v
        total += np.float64(v)
    _norm_row(t, total, gamma, beta, eps, out)


@njit(**_OPTS)
def add_norm_rows(x, residual, t0, t1, gamma, beta, eps, out):
    """Rows t0..t1 of ``add_norm``, on the calling thread: for fused kernels.

    Not inlined (a plain call), so it keeps this module's float flags
    whoever calls it, and rounds exactly as ``add_norm``.
    """
    for t in range(t0, t1):
        add_norm_row(x, residual, t, gamma, beta, eps, out)


@njit(parallel=True, **_OPTS)
def add_norm(x, residual, gamma, beta, eps, out):
    """out = LayerNorm(x + residual); x, residual, out (T, H) float32; out may alias x."""
    for t in prange(x.shape[0]):
        add_norm_row(x, residual, t, gamma, beta, eps, out)


@njit(parallel=True, **_OPTS)
def embed(ids, type_ids, position_ids, word, word_scale, position, token_type, gamma, beta, eps, out):
    """out[t] = LayerNorm(word[ids[t]] * word_scale[ids[t]] + position[p] + token_type[tt]).

    ``word`` is int8 (V, H) with per-row ``word_scale`` (V,), or float32 with
    ``word_scale`` all ones.
    """
    T, H = out.shape
    for t in prange(T):
        i, p, tt = ids[t], position_ids[t], type_ids[t]
        s = word_scale[i]
        total = 0.0
        for k in range(H):
            v = np.float32(word[i, k]) * s + position[p, k] + token_type[tt, k]
            out[t, k] = v
            total += np.float64(v)
        _norm_row(t, total, gamma, beta, eps, out)
