"""What the attention-family kernels need prepared on the NumPy side, without Numba (the native
library's binders use it too): blocking constants, per-thread scratch, per-model tables."""
from __future__ import annotations

import math

import numpy as np

W = 16  # lanes of one vector
QB = 8  # queries per block (rows of the register tiles)
CB = 32  # context columns per tile (two vectors)


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def scratch_size(max_len: int, head_dim: int) -> int:
    """float32 words one thread needs: K^T (d, Lp), V (Lp, dp), scores (QB, Lp), context tile, 1/sums,
    a padding mask (relative.py's biased scores)."""
    lp, dp = _round_up(max(max_len, 1), W), _round_up(head_dim, CB)
    return head_dim * lp + lp * dp + QB * lp + QB * CB + QB + W


def make_scratch(max_len: int, head_dim: int, threads: int | None = None) -> np.ndarray:
    """attention's scratch for ``threads`` kernel threads (default: Numba's pool size), one row each."""
    return per_thread(scratch_size(max_len, head_dim), threads)


def per_thread(words: int, threads: int | None = None) -> np.ndarray:
    """(threads, words) float32: one scratch row per kernel thread (default: Numba's pool size)."""
    if threads is None:
        import numba

        threads = numba.config.NUMBA_NUM_THREADS
    return np.empty((threads, words), dtype=np.float32)


# ---- relative_attention (relative.py) -------------------------------------------------
def distance_bias(table: np.ndarray, num_buckets: int, max_distance: int, cap: int) -> tuple[np.ndarray, int]:
    """(by_distance (nh, 2 cap - 1 + W) float32, centre = cap - 1): bias of every distance of sequences
    up to ``cap`` tokens, from the (buckets, nh) table; W more columns on the right for the padding keys
    of a sequence's last 16-key block (their scores are masked, but the kernel reads whole vectors)."""
    from ..reference import relative_buckets_ref

    distance = np.arange(-(cap - 1), cap + W)
    by_distance = table[relative_buckets_ref(distance, num_buckets, max_distance)].T  # (nh, 2 cap - 1)
    return np.ascontiguousarray(by_distance, dtype=np.float32), cap - 1


def relative_scratch_size(max_len: int, head_dim: int) -> int:
    """float32 words one thread needs: attention's (relative.py runs attention.item_attention)."""
    return scratch_size(max_len, head_dim)


# ---- attention_window (attention_window.py) -------------------------------------------
def window_scratch_size(window: int, head_dim: int) -> int:
    return 2 * window + 1 + head_dim


# ---- rotary (rotary.py) ------------------------------------------------------------------
def inverse_frequencies(head_dim: int, theta: float) -> np.ndarray:
    """(d/2,) float64: theta^(-2i/d), computed once per node at bind time."""
    return 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)


# ---- disentangled_attention (disentangled.py) ---------------------------------------------
SCALE_FACTOR = 3  # 1 + len(("c2p", "p2c")): transformers' scale_factor with both position terms


def distance_index(position_buckets: int, max_relative_positions: int, span: int,
                   cap: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(c2p (2 cap - 1,) int32, p2c (2 cap - 1,) int32, centre = cap - 1): for distance i - j at
    column centre + i - j, the row of Pk query i reads and the row of Pq key j reads."""
    from ..reference import log_buckets_ref

    delta = np.arange(-(cap - 1), cap)
    c2p = np.clip(log_buckets_ref(delta, position_buckets, max_relative_positions) + span, 0, 2 * span - 1)
    p2c = np.clip(-log_buckets_ref(-delta, position_buckets, max_relative_positions) + span, 0, 2 * span - 1)
    return c2p.astype(np.int32), p2c.astype(np.int32), cap - 1


def scale(head_dim: int) -> float:
    return 1.0 / math.sqrt(head_dim * SCALE_FACTOR)


def disentangled_scratch_size(max_len: int, head_dim: int) -> int:
    """float32 words one thread needs: K and V (L, d), a score row (L,), a context row and a query (d,) each."""
    L = max(max_len, 1)
    return 2 * L * head_dim + L + 2 * head_dim  # disentangled.scratch_words
