"""The attention kernel's blocking constants and per-thread scratch size (no Numba: the native
library's binders size scratch with them too)."""
from __future__ import annotations

import numpy as np

W = 16  # lanes of one vector
QB = 8  # queries per block (rows of the register tiles)
CB = 32  # context columns per tile (two vectors)


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def scratch_size(max_len: int, head_dim: int) -> int:
    """float32 words one thread needs: K^T (d, Lp), V (Lp, dp), scores (QB, Lp), context tile, 1/sums."""
    lp, dp = _round_up(max(max_len, 1), W), _round_up(head_dim, CB)
    return head_dim * lp + lp * dp + QB * lp + QB * CB + QB


def make_scratch(max_len: int, head_dim: int, threads: int | None = None) -> np.ndarray:
    """Scratch for ``threads`` kernel threads (default: Numba's pool size), one row each."""
    if threads is None:
        import numba

        threads = numba.config.NUMBA_NUM_THREADS
    return np.empty((threads, scratch_size(max_len, head_dim)), dtype=np.float32)
