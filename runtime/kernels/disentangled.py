"""DeBERTa-v2's disentangled self-attention (content-to-content, content-to-position, position-to-content).

Scores are (q_i.k_j + q_i.Pk[c2p(i - j)] + k_j.Pq[p2c(i - j)]) / sqrt(3 d): both position terms
depend on the pair only through the distance i - j, so the bucketing and clamping are expanded
once per model (``distance_index``) into two int32 tables indexed by ``centre + i - j``, and the
position queries and keys (nh, 2 span, d) are projected once per layer at bind time
(``runtime.reference.disentangled_positions_ref``); Pq comes pre-multiplied by the scale.
One work item is one (sequence, head), done by one thread start to end (results do not depend
on the thread count), over per-thread scratch as in ``relative.py``: K and V (L, d) row-major,
one row of scores (L,), one context row (d,) and the scaled query (d,).
Reference: ``runtime.reference.disentangled_attention_ref``.
"""
from __future__ import annotations

import math

from . import _jit  # noqa: F401,I001  (Numba with edgebert's settings first)
import numba
import numpy as np
from numba import njit, prange

# the NumPy-side preparation lives with the other attention kernels' (no Numba: native binders use it)
from .attention_layout import SCALE_FACTOR, distance_index, per_thread, scale  # noqa: F401
from .attention_layout import disentangled_scratch_size as scratch_size

def make_scratch(max_len: int, head_dim: int) -> np.ndarray:
    return per_thread(scratch_size(max_len, head_dim))


@njit(cache=True, nogil=True)
def scratch_words(L, d):
    return 2 * L * d + L + 2 * d


@njit(cache=True, nogil=True)
def _views(buf, L, d):
    """K (L, d), V (L, d), one query's scores (L,), its context (d,) and the query scaled (d,)."""
    n = L * d
    return (buf[:n].reshape((L, d)), buf[n:2 * n].reshape((L, d)), buf[2 * n:2 * n + L],
            buf[2 * n + L:2 * n + L + d], buf[2 * n + L + d:2 * n + L + 2 * d])


@njit(cache=True, nogil=True, parallel=True, fastmath=True)
def disentangled_attention(qkv, seq_offsets, num_heads, pos_key, pos_query_scaled, c2p, p2c, centre, out,
                           scratch):
    """qkv (T, 3H) float32 [q | k | v], seq_offsets (B+1,) -> out (T, H) float32.

    pos_key, pos_query_scaled (nh, 2 span, d) float32 (the latter times 1/sqrt(3 d)); c2p, p2c
    (C,) int32 rows by distance, centre: distance i - j at centre + i - j (needs centre >= L - 1
    and centre + L <= C); scratch (threads, scratch_size(max_len, d)) float32.
    """
    H = qkv.shape[1] // 3
    d = H // num_heads
    s_ = np.float32(1.0 / math.sqrt(d * SCALE_FACTOR))
    lengths = seq_offsets[1:] - seq_offsets[:-1]
    longest = lengths.max() if lengths.shape[0] else 0
    if longest - 1 > centre or centre + longest > c2p.shape[0] or scratch_words(longest, d) > scratch.shape[1]:
        raise ValueError("disentangled_attention: a sequence is longer than the distance table or scratch")
    for item in prange(lengths.shape[0] * num_heads):
        h = item % num_heads
        s, L = seq_offsets[item // num_heads], lengths[item // num_heads]
        k, v, p, acc, qs = _views(scratch[numba.get_thread_id()], L, d)
        pk, pq = pos_key[h], pos_query_scaled[h]
        qo, ko, vo = h * d, H + h * d, 2 * H + h * d
        for j in range(L):
            for c in range(d):
                k[j, c] = qkv[s + j, ko + c]
                v[j, c] = qkv[s + j, vo + c]
        for i in range(L):
            for c in range(d):
                qs[c] = qkv[s + i, qo + c] * s_
            m = np.float32(-np.inf)
            for j in range(L):
                rk, rq = c2p[centre + i - j], p2c[centre + i - j]
                x = np.float32(0.0)
                for c in range(d):
                    x += qs[c] * (k[j, c] + pk[rk, c]) + k[j, c] * pq[rq, c]
                p[j] = x
                m = max(m, x)
            for c in range(d):
                acc[c] = 0.0
            total = np.float32(0.0)
            for j in range(L):  # softmax numerators and the weighted sum of V in one pass
                w = np.float32(math.exp(p[j] - m))
                total += w
                for c in range(d):
                    acc[c] += w * v[j, c]
            inv = np.float32(1.0) / total
            for c in range(d):
                out[s + i, qo + c] = acc[c] * inv
