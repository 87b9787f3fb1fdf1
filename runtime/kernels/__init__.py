"""Int8 linear-layer kernels (quantize + GEMM + dequant fused), one per CPU path, and the ops' kernels.

Each module that holds Numba kernels imports ``_jit`` first, so the kernels
compile with edgebert's target settings whoever imports them first; the
tables (``isa.py``, ``cpu.py``) import without Numba (the native library's
loader reads them).
"""
