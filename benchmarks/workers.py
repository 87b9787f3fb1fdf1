"""One engine per process: a persistent worker, started with multiprocessing's spawn, driven over a pipe.

Engines sharing one process share its OpenMP runtime: once Numba (edgebert)
has loaded the system libgomp, PyTorch binds to that library instead of its
own, and after Numba's OpenMP layer has run one parallel loop there, PyTorch
at 2 threads ran 32x128 in 16.8 s instead of 2.9 s (1 thread: 2.2 s; measured
interleaved on 2 loaded cores; the same libgomp preloaded without Numba, or
GOMP_SPINCOUNT=100000, did not slow it). Here each engine lives in a fresh
interpreter whose environment is the benchmark's starting one
(``benchmarks.START_ENV``) plus what the caller adds. The coordinator sends
one request at a time and waits for its answer, so only one engine runs at any
moment; a timed request is answered only after the worker's own threads have
gone quiet (``measure.timed``), so the next engine starts on idle cores. Timing
happens inside the worker: the pipe's cost is never in a figure.

    with Worker(EngineClass, *args, env=env) as w:   # EngineClass(*args) is built in the child
        w.ready()                                     # wait until it is built
        w.call("embed", texts)                        # any method; or a module-level function
        seconds = w.time("run", ids, mask, types, warm=1, settle_s=0.02)
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import traceback

from benchmarks import START_ENV, measure


class WorkerError(RuntimeError):
    """The engine's process raised (its traceback is the message) or died."""


class Worker:
    def __init__(self, factory, *args, env: dict | None = None):
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child, factory, args), daemon=True,
                                   name=f"bench-{getattr(factory, '__name__', 'engine')}")
        with _environment(START_ENV if env is None else env):  # the child's environment from exec on
            self.process.start()
        child.close()
        self._ready = False

    def ready(self) -> None:
        """Block until the engine is built (raises WorkerError if building failed)."""
        if not self._ready:
            self._receive()
            self._ready = True

    def call(self, method, *args):
        """``engine.method(*args)``, or ``method(*args)`` where ``method`` is a module-level function."""
        return self._request(("call", method, args, {}))

    def time(self, method, *args, warm: int = 0, settle_s: float = 0.0) -> float:
        """Seconds of one call after ``warm`` untimed ones; answered once the worker is quiet."""
        return self._request(("time", method, args, {"warm": warm, "settle_s": settle_s}))

    def close(self, timeout_s: float = 30.0) -> None:
        if self.process.is_alive():
            with contextlib.suppress(OSError, EOFError):
                self._conn.send(("close",))
            self.process.join(timeout_s)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _request(self, request):
        self.ready()
        self._conn.send(request)
        return self._receive()

    def _receive(self):
        try:
            status, value = self._conn.recv()
        except EOFError:
            self.process.join(5)
            raise WorkerError(f"{self.process.name} died (exit code {self.process.exitcode})") from None
        if status == "error":
            raise WorkerError(f"{self.process.name} raised:\n{value}")
        return value


def engine_env(threads: int) -> dict:
    """The environment an engine's process starts with: the benchmark's own, untouched by
    edgebert's import; HF tokenizers parallel only when threads > 1 (it reads this at each call)."""
    return dict(START_ENV, TOKENIZERS_PARALLELISM="true" if threads > 1 else "false")


@contextlib.contextmanager
def _environment(env: dict):
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _serve(conn, factory, args) -> None:
    try:
        engine = factory(*args)
    except BaseException:
        conn.send(("error", traceback.format_exc()))
        return
    conn.send(("ok", None))
    while True:
        request = conn.recv()
        if request[0] == "close":
            return
        op, method, call_args, opts = request
        try:
            fn = method if callable(method) else getattr(engine, method)
            result = measure.timed(lambda: fn(*call_args), **opts) if op == "time" else fn(*call_args)
        except Exception:
            conn.send(("error", traceback.format_exc()))
        else:
            conn.send(("ok", result))
