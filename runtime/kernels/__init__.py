"""Int8 linear-layer kernels (quantize + GEMM + dequant fused), one per CPU path.

Numba is imported through ``runtime.startup`` before any kernel module, so the
kernels compile with edgebert's target settings whoever imports them first.
"""
from ..startup import import_numba

import_numba()
