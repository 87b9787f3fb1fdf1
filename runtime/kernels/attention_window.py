"""Sliding-window self-attention over packed sequences (ModernBERT's local layers).

Query i of a sequence sees only keys j with |i - j| <= window, so a query costs
O(window * d), not O(L * d). One work item is one (sequence, head) pair, done by
one thread start to end (results do not depend on the thread count). Scores,
softmax and context in float32 in per-thread scratch of 2 * window + 1 + d words,
with fastmath so the loops over d vectorise (the float64 scalar version took 4.7x
the global kernel's time at L 512, window 64, H 768).
Reference: ``runtime.reference.attention_ref`` with ``window``.
"""
from __future__ import annotations

import math

from . import _jit  # noqa: F401,I001  (Numba with edgebert's settings first)
import numba
import numpy as np
from numba import njit, prange

from .attention_layout import per_thread, window_scratch_size



def make_scratch(window: int, head_dim: int) -> np.ndarray:
    return per_thread(window_scratch_size(window, head_dim))


@njit(parallel=True, fastmath=True, cache=True, nogil=True)
def attention_window(qkv, seq_offsets, num_heads, window, out, scratch):
    """qkv (T, 3H) float32 [q | k | v], seq_offsets (B+1,) -> out (T, H) float32."""
    H = qkv.shape[1] // 3
    d = H // num_heads
    scale = np.float32(1.0 / math.sqrt(d))
    B = seq_offsets.shape[0] - 1
    for item in prange(B * num_heads):
        b, h = item // num_heads, item % num_heads
        s, e = seq_offsets[b], seq_offsets[b + 1]
        buf = scratch[numba.get_thread_id()]
        ctx = buf[2 * window + 1:]
        qo, ko, vo = h * d, H + h * d, 2 * H + h * d
        for i in range(s, e):
            j0, j1 = max(s, i - window), min(e, i + window + 1)
            q = qkv[i, qo:qo + d]
            m = np.float32(-np.inf)
            for j in range(j0, j1):
                k = qkv[j, ko:ko + d]
                acc = np.float32(0.0)
                for c in range(d):
                    acc += q[c] * k[c]
                acc *= scale
                buf[j - j0] = acc
                m = max(m, acc)
            total = np.float32(0.0)
            for c in range(d):
                ctx[c] = 0.0
            for j in range(j0, j1):
                p = np.exp(buf[j - j0] - m)
                total += p
                v = qkv[j, vo:vo + d]
                for c in range(d):
                    ctx[c] += p * v[c]
            inv = np.float32(1.0) / total
            for c in range(d):
                out[i, qo + c] = ctx[c] * inv
