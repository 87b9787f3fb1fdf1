"""Import Numba for edgebert: without its 0.3 s of scipy probes, with 512-bit vectors, TBB on request.

scipy: ``import numba`` imports scipy (70 ms) only to check its version, and
when Numba's CPU target first loads (the first kernel call, even from the
on-disk cache) ``numba.np.arraymath`` imports ``scipy.linalg`` (0.2 s) only
to learn whether BLAS exists for ``np.dot``-style functions. Together that
is a third of a warm-cache cold start, and edgebert's kernels use none of
it. So, where scipy is installed but not yet imported, both imports run
with scipy hidden, and arraymath's flag is then set to what its probe would
have found (scipy present); ``np.dot`` in anyone's Numba code still imports
scipy, on its first compilation, as it always does.

Vector width: on AVX-512 CPUs LLVM's default tuning keeps auto-vectorised
loops to 256 bits (a guard against the clock drop of Skylake-era parts).
On later ones the row quantizer, the dequant/GELU epilogue and LayerNorm
ran 10-30 % faster with 512-bit vectors (measured on Emerald Rapids), so
the target's features get ``-prefer-256-bit`` there. This is set in
``numba.config`` (never in the environment, which child processes on other
machines could inherit), only before Numba's CPU target is first built in
the process (importing Numba earlier is fine; compiling Numba code before
importing edgebert fixes the default target, and edgebert's kernels then
compile once for it) and only when the user set neither NUMBA_CPU_NAME nor
NUMBA_CPU_FEATURES. The explicit-intrinsic kernels are unaffected (they name
their vector widths). ``edgebert warmup`` compiles for the same settings.
"""
from __future__ import annotations

import ctypes
import importlib.util
import os
import sys

# AVX-512 CPUs whose clock drops under 512-bit work (LLVM's reason to prefer 256).
_KEEP_256 = ("skylake-avx512", "cascadelake", "cooperlake", "knl", "knm")

_done = False


def import_numba():
    """``import numba`` the edgebert way (see the module docstring); idempotent."""
    global _done
    if _done:
        import numba

        return numba
    _done = True
    preload_tbb()
    hide_scipy = ("scipy" not in sys.modules and "numba.np.arraymath" not in sys.modules
                  and importlib.util.find_spec("scipy") is not None)
    if hide_scipy:
        sys.modules["scipy"] = None  # `import scipy...` raises ImportError while this is here
    try:
        import numba
        import numba.np.arraymath as arraymath
    finally:
        if hide_scipy:
            del sys.modules["scipy"]
    if hide_scipy:
        arraymath._HAVE_BLAS = True  # what the probe finds with scipy installed
    from numba.core.registry import cpu_target

    # The target reads its features once, when first built (the first compile or cache load in
    # the process); after that they are the process's, and kernels compile for them.
    features = wide_vector_features()
    if features is not None and "_toplevel_target_context" not in cpu_target.__dict__:
        numba.core.config.CPU_FEATURES = features
    return numba


def wide_vector_features() -> str | None:
    """The host's LLVM feature string plus ``-prefer-256-bit``, or None where that does not apply."""
    if os.environ.get("NUMBA_CPU_NAME") or os.environ.get("NUMBA_CPU_FEATURES"):
        return None
    import llvmlite.binding as llvm

    features = llvm.get_host_cpu_features()
    if not features.get("avx512f") or llvm.get_host_cpu_name() in _KEEP_256:
        return None
    return features.flatten() + ",-prefer-256-bit"


def preload_tbb() -> bool:
    """Where the user chose Numba's TBB threading layer (NUMBA_THREADING_LAYER=tbb), load
    pip's ``tbb`` library globally so Numba finds it; True if loaded.

    Numba's extension finds ``libtbb.so.12`` only on the loader's path, and pip
    puts it in ``<prefix>/lib`` (``pip install 'edgebert[tbb]'``). Measured on
    2 cores, 2 threads: with a CPU-bound process on one core, OpenMP
    forwards wait at every parallel region for the late thread (throughput
    185 texts/s, below the 1-thread 616), TBB lets the other thread take its
    work (538); on a quiet machine OpenMP was about 12 % faster at 1 x 128
    tokens (5.5-6.0 vs 6.4-6.7 ms) and alike on big batches, so it stays the
    default. Linux only; elsewhere Numba looks for TBB itself.
    """
    if os.environ.get("NUMBA_THREADING_LAYER", "").strip().lower() != "tbb" or not sys.platform.startswith("linux"):
        return False
    import importlib.metadata  # here, not at the top: it costs tens of ms at every start

    try:
        files = importlib.metadata.files("tbb") or []
    except importlib.metadata.PackageNotFoundError:
        return False
    for f in files:
        if f.name == "libtbb.so.12":
            try:
                ctypes.CDLL(str(f.locate()), mode=ctypes.RTLD_GLOBAL)
                return True
            except OSError:
                return False
    return False
