"""Self-attention with a bucketed relative position bias (MPNet's; T5's bidirectional buckets).

Scores are q.k / sqrt(d) + bias[h, bucket(j - i)]: the bias depends only on the
distance j - i, so the table is expanded once per model (``distance_bias``, shared
by every layer) into ``by_distance`` (nh, C): row h, column ``centre + j - i``.
One work item is one (sequence, head), done by one thread start to end, so
results do not depend on the thread count. Per item, in per-thread scratch:
K^T (d, L) pre-multiplied by 1/sqrt(d), and one row of scores (L,).
Reference: ``runtime.reference.attention_ref`` with ``relative_bias_ref``.
"""
from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange

from ..reference import relative_buckets_ref


def distance_bias(table: np.ndarray, num_buckets: int, max_distance: int, cap: int) -> tuple[np.ndarray, int]:
    """(by_distance (nh, 2 cap - 1) float32, centre = cap - 1): bias of every distance of sequences
    up to ``cap`` tokens, from the (buckets, nh) table."""
    distance = np.arange(-(cap - 1), cap)
    by_distance = table[relative_buckets_ref(distance, num_buckets, max_distance)].T  # (nh, 2 cap - 1)
    return np.ascontiguousarray(by_distance, dtype=np.float32), cap - 1


def scratch_size(max_len: int, head_dim: int) -> int:
    """float32 words one thread needs: K^T (d, L) and a score row (L,)."""
    return (head_dim + 1) * max(max_len, 1)


def make_scratch(max_len: int, head_dim: int) -> np.ndarray:
    return np.empty((numba.config.NUMBA_NUM_THREADS, scratch_size(max_len, head_dim)), dtype=np.float32)


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
        if L - 1 > centre or centre + L > by_distance.shape[1] or (d + 1) * L > scratch.shape[1]:
            raise ValueError("relative_attention: a sequence is longer than the bias table or scratch")
    for item in prange(B * num_heads):
        b, h = item // num_heads, item % num_heads
        s, e = seq_offsets[b], seq_offsets[b + 1]
        L = e - s
        buf = scratch[numba.get_thread_id()]
        bias = by_distance[h]
        qo, ko, vo = h * d, H + h * d, 2 * H + h * d
        for j in range(L):  # K^T (d, L), scaled
            for c in range(d):
                buf[c * L + j] = qkv[s + j, ko + c] * scale
        P = d * L  # the score row
        for i in range(L):
            base = centre - i
            for j in range(L):
                buf[P + j] = bias[base + j]
            for c in range(d):
                qc = qkv[s + i, qo + c]
                for j in range(L):
                    buf[P + j] += qc * buf[c * L + j]
            m = buf[P]
            for j in range(1, L):
                m = max(m, buf[P + j])
            total = np.float32(0.0)
            for j in range(L):
                p = np.float32(math.exp(buf[P + j] - m))
                buf[P + j] = p
                total += p
            inv = np.float32(1.0) / total
            row = out[s + i]
            for c in range(d):
                row[qo + c] = 0.0
            for j in range(L):
                w = buf[P + j] * inv
                for c in range(d):
                    row[qo + c] += w * qkv[s + j, vo + c]
