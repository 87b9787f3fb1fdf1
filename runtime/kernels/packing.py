"""Weight packing shared by the x86 int8 paths (plain NumPy, run once at load)."""
import numpy as np


def pack_k4_blocks(qw, k_multiple, n_multiple, shift, lanes=16):
    """(N, K) int8 -> (flat [Np/lanes][Kp/4][lanes][4] int8, 64-byte aligned; shift * colsum (Np,) int32; Kp).

    K and N are zero-padded to multiples of ``k_multiple`` and ``n_multiple``
    (a multiple of ``lanes``); each block of ``lanes`` columns holds, per group
    of 4 K values, ``lanes`` columns x 4 bytes: one ``vpdpbusd`` operand (16
    lanes: zmm, 8: ymm), or one row of an AMX B tile (64-byte aligned, so no
    tile row straddles two cache lines). ``shift * colsum`` is the
    correction for activations stored as q + shift. The 4-byte groups move
    as int32 in one transposing copy (4x faster than moving bytes: it is
    most of a model's load time).
    """
    N, K = qw.shape
    Kp = -(-K // k_multiple) * k_multiple
    Np = -(-N // n_multiple) * n_multiple
    w = np.zeros((Np, Kp), np.int8)
    w[:N, :K] = qw
    corr = (shift * w.sum(axis=1, dtype=np.int32)).astype(np.int32)
    buf = np.empty(Np * Kp + 64, np.int8)
    off = -buf.ctypes.data % 64
    flat = buf[off : off + Np * Kp]
    groups = w.view(np.int32).reshape(Np // lanes, lanes, Kp // 4).transpose(0, 2, 1)
    flat.view(np.int32).reshape(Np // lanes, Kp // 4, lanes)[:] = groups
    return flat, corr, Kp
