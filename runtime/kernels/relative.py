"""Self-attention with a bucketed relative position bias (MPNet's; T5's bidirectional buckets).

Scores are q.k / sqrt(d) + bias[h, bucket(j - i)]: the bias depends only on the
distance j - i, so the table is expanded once per model (``distance_bias``, shared
by every layer) into ``by_distance`` (nh, C): row h, column ``centre + j - i``.
One work item is one (sequence, head), done by one thread start to end, so
results do not depend on the thread count. Per item, in per-thread scratch:
K (L, d) pre-multiplied by 1/sqrt(d) and V (L, d), so each score is a contiguous dot product
and each context row an axpy over contiguous rows (4.1x faster than over K^T and the output
row: 24 vs 99 ms for 128 tokens, 12 heads of 64, one thread), one row of scores (L,) and one
context row (d,).
Reference: ``runtime.reference.attention_ref`` with ``relative_bias_ref``.
"""
from __future__ import annotations

import math

from . import _jit  # noqa: F401,I001  (Numba with edgebert's settings first)
import numba
import numpy as np
from numba import njit, prange

from .attention_layout import distance_bias, per_thread, relative_scratch_size  # noqa: F401  (binders')


def scratch_size(max_len: int, head_dim: int) -> int:
    return relative_scratch_size(max_len, head_dim)


def make_scratch(max_len: int, head_dim: int) -> np.ndarray:
    return per_thread(relative_scratch_size(max_len, head_dim))


@njit(cache=True, nogil=True, parallel=True, fastmath=True)
def relative_attention(qkv, seq_offsets, num_heads, by_distance, centre, out, scratch):
    """qkv (T, 3H) float32 [q | k | v], seq_offsets (B+1,) -> out (T, H) float32.

    by_distance (nh, C), centre: bias of distance j - i at column centre + j - i (needs
    centre >= L - 1 and centre + L <= C for every sequence length L); scratch
    (threads, scratch_size(max_len, d)) float32.
    """
    T, H3 = qkv.shape
    H = H3 // 3
    d = H // num_heads
    scale = np.float32(1.0 / math.sqrt(d))
    B = seq_offsets.shape[0] - 1
    for b in range(B):
        L = seq_offsets[b + 1] - seq_offsets[b]
        if L - 1 > centre or centre + L > by_distance.shape[1] or 2 * L * d + L + d > scratch.shape[1]:
            raise ValueError("relative_attention: a sequence is longer than the bias table or scratch")
    for item in prange(B * num_heads):
        b, h = item // num_heads, item % num_heads
        s, e = seq_offsets[b], seq_offsets[b + 1]
        L = e - s
        buf = scratch[numba.get_thread_id()]
        k = buf[:L * d].reshape((L, d))  # K (L, d), scaled: each score is a contiguous dot product
        v = buf[L * d:2 * L * d].reshape((L, d))  # V (L, d)
        p = buf[2 * L * d:2 * L * d + L]  # one query's scores, then its softmax numerators
        acc = buf[2 * L * d + L:2 * L * d + L + d]  # one query's context
        bias = by_distance[h]
        qo, ko, vo = h * d, H + h * d, 2 * H + h * d
        for j in range(L):
            for c in range(d):
                k[j, c] = qkv[s + j, ko + c] * scale
                v[j, c] = qkv[s + j, vo + c]
        for i in range(L):
            q = qkv[s + i, qo:qo + d]
            m = np.float32(-np.inf)
            for j in range(L):
                x = np.float32(0.0)
                for c in range(d):
                    x += q[c] * k[j, c]
                x += bias[centre + j - i]
                p[j] = x
                m = max(m, x)
            total = np.float32(0.0)
            for j in range(L):
                w = np.float32(math.exp(p[j] - m))
                p[j] = w
                total += w
            for c in range(d):
                acc[c] = 0.0
            for j in range(L):
                w = p[j]
                for c in range(d):
                    acc[c] += w * v[j, c]
            inv = np.float32(1.0) / total
            for c in range(d):
                out[s + i, qo + c] = acc[c] * inv
