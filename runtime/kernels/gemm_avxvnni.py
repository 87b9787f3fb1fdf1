"""AVX-VNNI int8 linear kernels: ``vpdpbusd`` on ymm, for CPUs without AVX-512.

Intel's cores since Alder Lake (laptops, desktops, the N100 class) and Zen 5
have the VEX-encoded ``vpdpbusd``: 4 u8 x s8 products summed per int32 lane,
four times the multiplies per instruction of AVX2's ``vpmaddwd`` on int16.
The kernels are the AVX2 ones (``gemm_avx2``: the same 4x16 tile of 8 ymm
accumulators); u8 activation rows make them multiply with ``vpdpbusd``.

Import (and so compile) this module only on a CPU with AVX-VNNI.
Activations are stored as u8 = q + 128 and the GEMM subtracts 128 * colsum(w)
(precomputed at pack time), as on the AVX-512 VNNI path. Weights are packed
``[Np/8][Kp/4][8][4]``: one 32-byte vector holds 4 consecutive k of 8 columns.
"""

from .gemm_avx2 import VNNI_MR, VNNI_SHIFT, gemm_i32_kernel, qlinear_kernel  # noqa: F401 - this path's kernels
from .packing import pack_k4_blocks

MR = VNNI_MR  # rows per register tile (6: see gemm_avx2._tile)
NR = 16  # columns per register tile (2 ymm of 8 int32)
KG = 4  # k per vpdpbusd group
SHIFT = VNNI_SHIFT  # u8 = q + SHIFT (128)


def pack(qw):
    """(N, K) int8 -> (flat packed weights [Np/8][Kp/4][8][4], 128*colsum (Np,) int32, Kp)."""
    return pack_k4_blocks(qw, KG, NR, SHIFT, lanes=8)
