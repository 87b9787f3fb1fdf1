"""Runtime settings with environment overrides, in one place."""
from __future__ import annotations

import os

from .errors import InputError

THREADS_ENV = "EDGEBERT_NUM_THREADS"


def resolve_threads(threads: int | None) -> int:
    """Thread count: the argument, else $EDGEBERT_NUM_THREADS, else every core Numba sees."""
    from .runtime.startup import import_numba

    numba = import_numba()

    if threads is None:
        env = os.environ.get(THREADS_ENV, "").strip()
        if env:
            try:
                threads = int(env)
            except ValueError:
                raise InputError(f"{THREADS_ENV}={env!r} is not an integer") from None
    if threads is None:
        return numba.config.NUMBA_NUM_THREADS
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise InputError(f"threads must be a positive integer, got {threads!r}")
    return min(threads, numba.config.NUMBA_NUM_THREADS)


def apply_threads(threads: int) -> None:
    import numba

    numba.set_num_threads(threads)
