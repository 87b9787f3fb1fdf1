"""Runtime settings with environment overrides, in one place."""
from __future__ import annotations

import os

from .errors import InputError

THREADS_ENV = "EDGEBERT_NUM_THREADS"
CACHE_ENV = "EDGEBERT_CACHE"


def cache_root():
    """edgebert's cache folder: $EDGEBERT_CACHE, else ~/.cache/edgebert (compiled-kernel markers, the
    native library, unpacked model packages, checked tokenizers, verified files)."""
    from pathlib import Path

    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "edgebert")


def resolve_threads(threads: int | None, jit: bool = True) -> int:
    """Thread count: the argument, else $EDGEBERT_NUM_THREADS, else every core the kernels may use
    (Numba's pool size; ``jit=False``: the same count without importing Numba)."""
    if jit:
        from .runtime.startup import import_numba

        most = import_numba().config.NUMBA_NUM_THREADS
    else:
        from .runtime.native.library import max_threads

        most = max_threads()
    if threads is None:
        env = os.environ.get(THREADS_ENV, "").strip()
        if env:
            try:
                threads = int(env)
            except ValueError:
                raise InputError(f"{THREADS_ENV}={env!r} is not an integer") from None
    if threads is None:
        return most
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise InputError(f"threads must be a positive integer, got {threads!r}")
    return min(threads, most)
