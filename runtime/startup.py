"""Import Numba without its 0.3 s of scipy probes.

``import numba`` imports scipy (70 ms) only to check its version, and when
Numba's CPU target first loads (the first kernel call, even from the
on-disk cache) ``numba.np.arraymath`` imports ``scipy.linalg`` (0.2 s) only
to learn whether BLAS exists for ``np.dot``-style functions. Together that
is a third of a warm-cache cold start, and edgebert's kernels use none of
it. So, where scipy is installed but not yet imported, both imports run
with scipy hidden, and arraymath's flag is then set to what its probe would
have found (scipy present); ``np.dot`` in anyone's Numba code still imports
scipy, on its first compilation, as it always does.
"""
from __future__ import annotations

import importlib.util
import sys

_done = False


def import_numba():
    """``import numba``, with ``numba.np.arraymath`` loaded without importing scipy."""
    global _done
    if _done or "numba.np.arraymath" in sys.modules or "scipy" in sys.modules \
            or importlib.util.find_spec("scipy") is None:
        _done = True  # nothing to gain: done, already loaded, scipy already paid for, or no scipy
        import numba

        return numba
    _done = True
    sys.modules["scipy"] = None  # `import scipy...` raises ImportError while this is here
    try:
        import numba
        import numba.np.arraymath as arraymath
    finally:
        del sys.modules["scipy"]
    arraymath._HAVE_BLAS = True  # what the probe finds with scipy installed
    return numba
