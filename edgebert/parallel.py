"""Many batches at once: one batch per thread, each forward on one kernel thread.

With N threads, a forward pass normally splits every kernel across N threads
and waits for the slowest at each of its ~40 kernel calls. Over many batches
it is faster to give each thread whole batches: no waiting per kernel, and a
core that is busy with another process delays only its own batch instead of
every kernel of every batch (measured on 2 cores, 2,619 Lee sentences: 1214
vs 1059 texts/s quiet, 1138 vs 422 with a busy-looping process beside us).

Each thread's forwards use their own buffers (the executor's per-thread
workspace) and the kernels are bit-identical at any thread count, so results
do not depend on which thread ran which batch.
"""
from __future__ import annotations

import contextlib
import os
import threading
import weakref
from typing import TYPE_CHECKING, Callable, Sequence

if TYPE_CHECKING:  # imported where the first pool starts: concurrent.futures (with logging) costs ~10 ms at start-up
    from concurrent.futures import ThreadPoolExecutor

# Below this many batches per thread, batches run one at a time on all threads:
# with few batches of unequal lengths, one thread would idle while another
# finishes the longest batch alone.
MIN_BATCHES_PER_THREAD = 2


class BatchRunner:
    """Runs ``work(batch, kernel_threads)`` for every batch; owns a lazily started pool."""

    def __init__(self, threads: int, concurrent_safe: bool = False):
        """``concurrent_safe``: kernels may run from several threads at once whatever Numba's
        threading layer (the native library's pool: a second caller runs its kernel inline)."""
        self.threads = threads
        self.concurrent_safe = concurrent_safe
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        _RUNNERS.add(self)

    def workers(self, n_batches: int) -> int:
        """Threads that get whole batches (1: batches run one at a time, on all threads)."""
        if self.threads < 2 or not (self.concurrent_safe or _concurrent_calls_safe()):
            return 1
        return max(1, min(self.threads, n_batches // MIN_BATCHES_PER_THREAD))

    def run(self, batches: Sequence, work: Callable[[object, int], None]) -> None:
        """Every batch through ``work``; longest-first when side by side (batches come
        shortest first), so the last ones to finish are short and threads end together."""
        workers = self.workers(len(batches))
        if workers == 1:
            for batch in batches:
                work(batch, self.threads)
            return
        queue = iter(list(reversed(batches)))
        lock, failed = threading.Lock(), threading.Event()

        def loop():
            while not failed.is_set():
                with lock:
                    batch = next(queue, None)
                if batch is None:
                    return
                try:
                    work(batch, 1)
                except BaseException:
                    failed.set()  # the others stop at their next batch
                    raise

        futures = [self._executor().submit(loop) for _ in range(workers - 1)]
        try:
            loop()  # the calling thread is one of the workers
        finally:
            errors = [f.exception() for f in futures]  # waits for every worker
        for error in errors:
            if error is not None:
                raise error

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                # idle workers block on a queue: no CPU while nothing runs
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(self.threads - 1, thread_name_prefix="edgebert")
                weakref.finalize(self, self._pool.shutdown, wait=False)
            return self._pool


_SERIAL = threading.Lock()  # held around every forward pass where kernels may not overlap
_safe_layer = False  # set once the threading layer is known to take concurrent calls


def kernel_guard(native: bool = False):
    """What to hold around a forward pass: nothing where Numba's threading layer takes
    parallel kernels from several threads at once (OpenMP, TBB); one process-wide
    lock where it does not (workqueue, Numba's fallback where OpenMP is missing, as
    on macOS without libomp), whose concurrent use aborts the process."""
    return contextlib.nullcontext() if native or _concurrent_calls_safe() else _SERIAL


# A forked child inherits the pool object but none of its threads: work handed to it
# would wait for ever. Each runner starts a new pool in the child instead.
_RUNNERS: "weakref.WeakSet[BatchRunner]" = weakref.WeakSet()


def _forget_pools_after_fork() -> None:
    for runner in list(_RUNNERS):
        runner._pool = None
        runner._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools_after_fork)


def _concurrent_calls_safe() -> bool:
    """Numba's workqueue threading layer refuses parallel kernels called from two
    threads at once; OpenMP and TBB allow it. The layer is known only after the
    first parallel kernel ran: until then, batches run one at a time."""
    global _safe_layer
    if _safe_layer:
        return True
    import numba

    try:
        _safe_layer = numba.threading_layer() != "workqueue"
    except ValueError:
        return False
    return _safe_layer
