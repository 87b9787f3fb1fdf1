"""Multi-head self-attention over packed sequences (no compute on padding).

One work item is one (sequence, head) pair, done by one thread from start to
end, so results do not depend on the thread count or on the other sequences.
Reference: ``runtime.reference.attention_ref``.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True)
def attention(qkv, seq_offsets, num_heads, out):
    """qkv (T, 3H) float32 [q | k | v], seq_offsets (B+1,) -> out (T, H) float32."""
    T, H3 = qkv.shape
    H = H3 // 3
    d = H // num_heads
    scale = np.float32(1.0 / math.sqrt(d))
    B = seq_offsets.shape[0] - 1
    for item in prange(B * num_heads):
        b, h = item // num_heads, item % num_heads
        s, e = seq_offsets[b], seq_offsets[b + 1]
        L = e - s
        qo, ko, vo = h * d, H + h * d, 2 * H + h * d
        p = np.empty(L, dtype=np.float32)
        acc = np.empty(d, dtype=np.float32)
        for i in range(L):
            # scores of query i against every key of its own sequence
            m = -np.inf
            for j in range(L):
                dot = np.float32(0.0)
                for c in range(d):
                    dot += qkv[s + i, qo + c] * qkv[s + j, ko + c]
                p[j] = dot * scale
                m = max(m, p[j])
            total = np.float32(0.0)
            for j in range(L):
                p[j] = np.exp(p[j] - m)
                total += p[j]
            acc[:] = 0.0
            for j in range(L):
                w = p[j]
                for c in range(d):
                    acc[c] += w * qkv[s + j, vo + c]
            inv = np.float32(1.0) / total
            for c in range(d):
                out[s + i, qo + c] = acc[c] * inv
