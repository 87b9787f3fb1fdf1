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


def pack_rows(qw, n_multiple):
    """(N, K) int8 -> (plain (Np, K) int8 rows, flat; zeros (Np,) int32; K): the portable layout."""
    N, K = qw.shape
    Np = -(-N // n_multiple) * n_multiple
    w = np.zeros((Np, K), np.int8)
    w[:N] = qw
    return w.reshape(-1), np.zeros(Np, np.int32), K


def pack_pairs(qw, k_multiple, n_multiple):
    """(N, K) int8 -> (flat int8 [Np/8][Kp/2][8][2], zeros (Np,) int32, Kp): one ``vpmaddwd``
    operand (2 consecutive k of 8 columns) per 16 bytes, widened to int16 as loaded: the AVX2 layout."""
    N, K = qw.shape
    Kp = -(-K // k_multiple) * k_multiple
    Np = -(-N // n_multiple) * n_multiple
    w = np.zeros((Np, Kp), np.int8)
    w[:N, :K] = qw
    # (Np, Kp) -> [Np/8][Kp/2][8][2], moving each pair of k as one int16 (3x faster than bytes)
    pairs = w.view(np.int16).reshape(Np // 8, 8, Kp // 2).transpose(0, 2, 1)
    return np.ascontiguousarray(pairs).view(np.int8).reshape(-1), np.zeros(Np, np.int32), Kp


# Each path's packer with its module's constants (KG, NR, SHIFT, lanes), for callers that must not
# import the Numba modules (the native library); tests/runtime/test_native.py checks each equals
# its module's ``pack``.
PACKERS = {
    "portable": lambda qw: pack_rows(qw, 16),
    "avx2": lambda qw: pack_pairs(qw, 2, 16),
    "avxvnni": lambda qw: pack_k4_blocks(qw, 4, 16, 128, lanes=8),
    "avx512vnni": lambda qw: pack_k4_blocks(qw, 4, 64, 128),
    "amx": lambda qw: pack_k4_blocks(qw, 64, 32, 128),
    "neon_dot": lambda qw: pack_k4_blocks(qw, 4, 16, 0, lanes=4),
}
