"""Plain NumPy references of every op, over packed activations (T, D).

Slow and obvious on purpose: the fast Numba kernels are tested against these,
and with float32 weights this path is the FP32 baseline (it needs no torch).
"""
from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from .kernels.gemm_ref import gelu_ref as gelu_f64_ref

F32 = np.float32


def layernorm_ref(x: NDArray, gamma: NDArray, beta: NDArray, eps: float) -> NDArray:
    """Row-wise LayerNorm; statistics in float64 (as the fast kernel does)."""
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=1, keepdims=True)
    var = ((x64 - mean) ** 2).mean(axis=1, keepdims=True)
    return ((x64 - mean) / np.sqrt(var + eps) * gamma + beta).astype(F32)


def add_norm_ref(x: NDArray, residual: NDArray, gamma: NDArray, beta: NDArray, eps: float) -> NDArray:
    return layernorm_ref(x.astype(F32) + residual.astype(F32), gamma, beta, eps)


def embed_ref(ids, type_ids, position_ids, word, word_scale, position, token_type, gamma, beta, eps):
    """Sum of word (int8 rows dequantized, or float32), position and type rows, then LayerNorm."""
    rows = word[ids].astype(F32)
    if word_scale is not None:
        rows = rows * word_scale[ids][:, None]
    return layernorm_ref(rows + position[position_ids] + token_type[type_ids], gamma, beta, eps)


def relative_buckets_ref(distance: NDArray, num_buckets: int, max_distance: int) -> NDArray:
    """Bucket of each relative distance j - i (key minus query), as transformers' MPNet (T5's
    bidirectional buckets): half the buckets per direction, exact below num_buckets // 4, then
    log-spaced up to max_distance; float32 arithmetic as torch does it, truncated."""
    n = -np.asarray(distance, dtype=np.int64)
    half = num_buckets // 2
    exact = half // 2
    ret = (n < 0).astype(np.int64) * half
    n = np.abs(n)
    ratio = np.maximum(n, 1).astype(F32) / F32(exact)
    large = exact + (np.log(ratio) / F32(math.log(max_distance / exact)) * F32(half - exact)).astype(np.int64)
    return ret + np.where(n < exact, n, np.minimum(large, half - 1))


def relative_bias_ref(table: NDArray, length: int, num_buckets: int, max_distance: int) -> NDArray:
    """(nh, L, L) bias of query i and key j: table[bucket(j - i)] (table: (buckets, nh))."""
    pos = np.arange(length)
    return table[relative_buckets_ref(pos[None, :] - pos[:, None], num_buckets, max_distance)].transpose(2, 0, 1)


def gelu_ref(y: NDArray) -> NDArray:
    """Exact (erf) GELU, as BERT's ``hidden_act="gelu"``, rounded to float32."""
    return gelu_f64_ref(y).astype(F32)


def gelu_tanh_ref(y: NDArray) -> NDArray:
    """The tanh approximation of GELU (transformers' ``gelu_new``, ALBERT), in float64, rounded to float32."""
    y64 = y.astype(np.float64)
    return (0.5 * y64 * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (y64 + 0.044715 * y64 ** 3)))).astype(F32)


def geglu_ref(x: NDArray) -> NDArray:
    """Gated GELU: the first half of each row, GELU'd, times the second half; (T, 2F) -> (T, F)."""
    f = x.shape[1] // 2
    return (gelu_ref(x[:, :f]) * x[:, f:]).astype(F32)


def linear_f32_ref(x: NDArray, w: NDArray, bias: NDArray, activation: str) -> NDArray:
    """x (T, K) @ w (N, K).T + bias -> (T, N), float32 weights."""
    y = (x @ w.T + bias).astype(F32)
    return gelu_ref(y) if activation == "gelu" else y


def attention_ref(qkv: NDArray, seq_offsets: NDArray, num_heads: int, window: int | None = None,
                  position_bias=None) -> NDArray:
    """Softmax(QK^T / sqrt(d)) V per sequence and head; sequences never see each other.
    With ``window``, query i sees only keys j with |i - j| <= window (a sliding window)."""
    T, H3 = qkv.shape
    H = H3 // 3
    d = H // num_heads
    out = np.zeros((T, H), dtype=F32)
    for b in range(len(seq_offsets) - 1):
        s, e = int(seq_offsets[b]), int(seq_offsets[b + 1])
        q = qkv[s:e, :H].reshape(e - s, num_heads, d).transpose(1, 0, 2)  # (nh, L, d)
        k = qkv[s:e, H:2 * H].reshape(e - s, num_heads, d).transpose(1, 0, 2)
        v = qkv[s:e, 2 * H:].reshape(e - s, num_heads, d).transpose(1, 0, 2)
        scores = (q @ k.transpose(0, 2, 1)).astype(np.float64) / math.sqrt(d)  # (nh, L, L)
        if position_bias is not None:  # a callable: length -> (nh, L, L), e.g. relative_bias_ref
            scores += position_bias(e - s)
        if window is not None:
            pos = np.arange(e - s)
            scores[:, np.abs(pos[:, None] - pos[None, :]) > window] = -np.inf
        scores -= scores.max(axis=2, keepdims=True)
        p = np.exp(scores)
        p /= p.sum(axis=2, keepdims=True)
        ctx = p @ v.astype(np.float64)  # (nh, L, d)
        out[s:e] = ctx.transpose(1, 0, 2).reshape(e - s, H)
    return out


def first_token_ref(x: NDArray, seq_offsets: NDArray) -> NDArray:
    """Packed (T, H) -> (B, H): each sequence's first row (BERT's [CLS], what the pooler reads)."""
    return np.ascontiguousarray(x[np.asarray(seq_offsets[:-1], dtype=np.int64)], dtype=F32)


def tanh_ref(y: NDArray) -> NDArray:
    return np.tanh(y.astype(np.float64)).astype(F32)


def relu_ref(y: NDArray) -> NDArray:
    return np.maximum(y, 0).astype(F32)


def rotary_ref(qkv: NDArray, position_ids: NDArray, num_heads: int, theta: float) -> NDArray:
    """Rotary positions on q and k of (T, 3H) qkv, v unchanged: per head of width d, the pair
    (x[i], x[i + d/2]) at position p is rotated by the angle p * theta^(-2i/d) (rotate_half)."""
    T, H3 = qkv.shape
    H = H3 // 3
    d = H // num_heads
    inv_freq = 1.0 / theta ** (np.arange(0, d, 2, dtype=np.float64) / d)  # (d/2,)
    angle = np.asarray(position_ids, dtype=np.float64)[:, None] * inv_freq[None, :]  # (T, d/2)
    cos, sin = np.cos(angle)[:, None, :], np.sin(angle)[:, None, :]
    out = qkv.astype(np.float64)
    for start in (0, H):  # q, then k: (T, nh, d)
        x = out[:, start:start + H].reshape(T, num_heads, d)
        lo, hi = x[..., :d // 2].copy(), x[..., d // 2:].copy()
        x[..., :d // 2] = lo * cos - hi * sin
        x[..., d // 2:] = hi * cos + lo * sin
        out[:, start:start + H] = x.reshape(T, H)
    return out.astype(F32)


def add_ref(x: NDArray, residual: NDArray) -> NDArray:
    return (x.astype(F32) + residual.astype(F32)).astype(F32)


def neighbours_ref(x: NDArray, seq_offsets: NDArray, size: int) -> NDArray:
    """Packed (T, D) -> (T, size D): row t's sequence rows t - size//2 .. t + size//2 side by side, zero
    rows beyond the sequence's ends (a Conv1d's zero padding)."""
    T, D = x.shape
    half, out = size // 2, np.zeros((T, size * D), F32)
    for s, e in zip(seq_offsets[:-1], seq_offsets[1:]):
        for t in range(int(s), int(e)):
            for j in range(size):
                src = t + j - half
                if s <= src < e:
                    out[t, j * D:(j + 1) * D] = x[src]
    return out


def mean_pool_ref(x: NDArray, seq_offsets: NDArray) -> NDArray:
    """Packed (T, H) -> (B, H): the mean of each sequence's rows (ModernBERT's mean classifier pooling)."""
    return np.stack([x[int(s):int(e)].astype(np.float64).mean(axis=0)
                     for s, e in zip(seq_offsets[:-1], seq_offsets[1:])]).astype(F32)


def log_buckets_ref(distance: NDArray, position_buckets: int, max_relative_positions: int) -> NDArray:
    """DeBERTa-v2's bucket of each relative distance i - j (query minus key), as transformers'
    ``make_log_bucket_position``: exact within +-(position_buckets / 2), then sign * ceil(log-spaced)
    up to max_relative_positions, in float32 as torch computes it; 0 buckets: the distance itself."""
    rel = np.asarray(distance, dtype=np.int64)
    if position_buckets <= 0:
        return rel
    mid = position_buckets // 2
    abs_pos = np.where((rel < mid) & (rel > -mid), mid - 1, np.abs(rel)).astype(F32)
    log_pos = np.ceil(np.log(abs_pos / F32(mid)) / np.log(F32((max_relative_positions - 1) / mid))
                      * F32(mid - 1)) + F32(mid)
    return np.where(abs_pos <= mid, rel, (log_pos * np.sign(rel)).astype(np.int64)).astype(np.int64)


def disentangled_positions_ref(rel: NDArray, proj_w: NDArray, proj_b: NDArray, num_heads: int,
                               norm: tuple | None = None) -> tuple[NDArray, NDArray]:
    """(position queries, position keys), (nh, 2 span, d) each: the relative embeddings (2 span, H),
    LayerNormed when ``norm`` = (gamma, beta, eps) (DeBERTa-v3's norm_rel_ebd), through rows 0..H-1
    (queries) and H..2H-1 (keys) of the float (N >= 2H, H) projection ``proj_w`` with bias ``proj_b``."""
    x = rel.astype(F32) if norm is None else layernorm_ref(rel, *norm)
    H = rel.shape[1]
    out = []
    for rows in (slice(0, H), slice(H, 2 * H)):
        y = x.astype(np.float64) @ proj_w[rows].astype(np.float64).T + proj_b[rows]  # (2 span, H)
        out.append(np.ascontiguousarray(y.reshape(len(x), num_heads, -1).transpose(1, 0, 2), dtype=F32))
    return out[0], out[1]


def disentangled_attention_ref(qkv: NDArray, seq_offsets: NDArray, num_heads: int, pos_query: NDArray,
                               pos_key: NDArray, position_buckets: int, max_relative_positions: int) -> NDArray:
    """DeBERTa-v2's disentangled self-attention per sequence, written as transformers does it: scores
    (q_i.k_j + q_i.Pk[c2p(i, j)] + k_j.Pq[p2c(j, i)]) / sqrt(3 d), with r(a, b) = bucket(a - b),
    span = rows of pos_query / 2, c2p(i, j) = clamp(r(i, j) + span) and p2c read from key j's row at
    clamp(-r(j, i) + span), both clamped to 0..2 span - 1; softmax over keys, times V."""
    T, H3 = qkv.shape
    H = H3 // 3
    d = H // num_heads
    span = pos_query.shape[1] // 2
    scale = math.sqrt(d * 3)  # scale_factor 1 + len(("c2p", "p2c"))
    out = np.zeros((T, H), dtype=F32)
    for b in range(len(seq_offsets) - 1):
        s, e = int(seq_offsets[b]), int(seq_offsets[b + 1])
        L = e - s
        q = qkv[s:e, :H].reshape(L, num_heads, d).transpose(1, 0, 2).astype(np.float64)  # (nh, L, d)
        k = qkv[s:e, H:2 * H].reshape(L, num_heads, d).transpose(1, 0, 2).astype(np.float64)
        v = qkv[s:e, 2 * H:].reshape(L, num_heads, d).transpose(1, 0, 2).astype(np.float64)
        pos = np.arange(L)
        r = log_buckets_ref(pos[:, None] - pos[None, :], position_buckets, max_relative_positions)  # (L, L)
        c2p = np.take_along_axis(q @ pos_key.astype(np.float64).transpose(0, 2, 1),  # (nh, L, 2 span)
                                 np.clip(r + span, 0, 2 * span - 1)[None], axis=2)
        p2c = np.take_along_axis(k @ pos_query.astype(np.float64).transpose(0, 2, 1),  # rows: keys
                                 np.clip(-r + span, 0, 2 * span - 1)[None], axis=2).transpose(0, 2, 1)
        scores = (q @ k.transpose(0, 2, 1) + c2p + p2c) / scale  # (nh, L, L)
        scores -= scores.max(axis=2, keepdims=True)
        p = np.exp(scores)
        p /= p.sum(axis=2, keepdims=True)
        out[s:e] = (p @ v).transpose(1, 0, 2).reshape(L, H)
    return out
