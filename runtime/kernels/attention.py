"""Multi-head self-attention over packed sequences (no compute on padding).

One work item is one (sequence, head) pair, done by one thread start to end,
so results do not depend on the thread count or on the other sequences (the
code path, and so the float order, is the same whoever runs it). The score
row of one query at a time is the only score storage (never an (L, L) matrix
per head). K and V of the head are transposed once into per-thread scratch so
every inner loop runs over a contiguous axis and vectorises; exp is a
polynomial over the row, max and sum use 16 fixed lanes.
Reference: ``runtime.reference.attention_ref``.
"""
from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange

from .bits import bits_f32

LANES = 16
# exp(x) for x <= 0 as 2^k * p(r), k = round(x / ln 2), r = x - k ln 2 in
# [-ln2/2, ln2/2], p the degree-6 Taylor polynomial: relative error < 5e-7.
# Below -87 the result would be denormal; it is clamped (weight < 2e-38).
_LOG2E = np.float32(1.4426950408889634)
_LN2_HI = np.float32(0.693359375)
_LN2_LO = np.float32(-2.12194440e-4)
_EXP_MIN = np.float32(-87.0)


def scratch_size(max_len: int, head_dim: int) -> int:
    """float32 words one thread needs: K^T and V^T (d, L) each, scores (L,), lanes, acc (d,)."""
    return 2 * head_dim * max_len + max_len + LANES + head_dim


def make_scratch(max_len: int, head_dim: int) -> np.ndarray:
    return np.empty((numba.config.NUMBA_NUM_THREADS, scratch_size(max_len, head_dim)), dtype=np.float32)


@njit(cache=True, inline="always", fastmath=True)
def _exp_nonpositive(p, n):
    """p[:n] = exp(p[:n]) for p <= 0."""
    for j in range(n):
        x = max(p[j], _EXP_MIN)
        k = -np.int32(np.float32(0.5) - x * _LOG2E)  # round(x log2 e); the operand is > 0, so int() floors
        kf = np.float32(k)
        r = x - kf * _LN2_HI - kf * _LN2_LO
        poly = np.float32(1.0) + r * (np.float32(1.0) + r * (np.float32(0.5) + r * (
            np.float32(1.0 / 6) + r * (np.float32(1.0 / 24) + r * (np.float32(1.0 / 120) + r * np.float32(1.0 / 720))))))
        p[j] = poly * bits_f32((k + np.int32(127)) << np.int32(23))


@njit(cache=True, inline="always", fastmath=True)
def _lane_max(p, lanes, n):
    full = n - n % LANES
    lanes[:] = p[0]
    for jb in range(0, full, LANES):
        for u in range(LANES):
            lanes[u] = max(lanes[u], p[jb + u])
    m = p[0]
    for j in range(full, n):
        m = max(m, p[j])
    for u in range(LANES):
        m = max(m, lanes[u])
    return m


@njit(cache=True, inline="always", fastmath=True)
def _lane_sum(p, lanes, n):
    full = n - n % LANES
    lanes[:] = 0.0
    for jb in range(0, full, LANES):
        for u in range(LANES):
            lanes[u] += p[jb + u]
    total = np.float32(0.0)
    for j in range(full, n):
        total += p[j]
    for u in range(LANES):
        total += lanes[u]
    return total


@njit(cache=True, parallel=True, fastmath=True)
def attention(qkv, seq_offsets, num_heads, out, scratch):
    """qkv (T, 3H) float32 [q | k | v], seq_offsets (B+1,) -> out (T, H) float32.

    scratch: (threads, scratch_size(max_len, d)) float32, reused across calls.
    """
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
        buf = scratch[numba.get_thread_id()]
        kt = buf[:d * L]  # K^T (d, L) flattened
        vt = buf[d * L:2 * d * L]  # V^T (d, L) flattened
        p = buf[2 * d * L:2 * d * L + L]
        lanes = buf[2 * d * L + L:2 * d * L + L + LANES]
        for j in range(L):
            for c in range(d):
                kt[c * L + j] = qkv[s + j, ko + c]
                vt[c * L + j] = qkv[s + j, vo + c]
        for i in range(L):
            p[:L] = 0.0
            for c in range(d):  # scores of query i against every key of its sequence
                qc = qkv[s + i, qo + c] * scale
                base = c * L
                for j in range(L):
                    p[j] += qc * kt[base + j]
            m = _lane_max(p, lanes, L)
            for j in range(L):
                p[j] -= m
            _exp_nonpositive(p, L)
            inv = np.float32(1.0) / _lane_sum(p, lanes, L)
            for c in range(d):
                base = c * L
                acc = np.float32(0.0)
                for j in range(L):
                    acc += p[j] * vt[base + j]
                out[s + i, qo + c] = acc * inv
