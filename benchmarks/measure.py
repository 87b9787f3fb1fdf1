"""Interleaved timing: every repetition runs each engine once, in a rotating order,
so that drift (another process, clocks, heat) hits all engines alike; one timed
call (run in the engine's own process); accuracy of embeddings."""
from __future__ import annotations

import gc
import resource
import time

import numpy as np


def interleaved(calls: dict, reps: int, warmup: int = 1, budget_s: float | None = None,
                min_reps: int = 1) -> dict:
    """{name: fn returning seconds} -> {name: [seconds]}, at most ``reps`` rounds.

    Each ``fn`` times its own call (in the engine's process: ``timed`` through
    ``workers.Worker.time``) and returns only once that process is quiet.
    ``warmup`` untimed rounds first. ``budget_s``: stop early (never before
    ``min_reps`` rounds) when one more round would end past it.
    """
    names = list(calls)
    for _ in range(warmup):
        for name in names:
            calls[name]()
    times = {name: [] for name in names}
    start = time.perf_counter()
    for r in range(reps):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times[name].append(calls[name]())
        elapsed = time.perf_counter() - start
        if budget_s and r + 1 >= min_reps and elapsed * (r + 2) / (r + 1) > budget_s:
            break
    return times


def timed(fn, warm: int = 0, settle_s: float = 0.0) -> float:
    """Seconds of one ``fn()`` after ``warm`` untimed calls (hot, as in a stream of requests).

    Afterwards, at least ``settle_s`` of pause and then until this process is
    quiet (``wait_quiet``): the worker threads it leaves spinning (ONNX Runtime
    spins for about 20-40 ms after a call, OpenMP about 1 ms) must not steal a
    core from the next engine timed.
    """
    gc.collect()
    gc.disable()
    try:
        for _ in range(warm):
            fn()
        t0 = time.perf_counter()
        fn()
        seconds = time.perf_counter() - t0
    finally:
        gc.enable()
    if settle_s:
        time.sleep(settle_s)
        wait_quiet()
    return seconds


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)  # all threads of this process
    return r.ru_utime + r.ru_stime


def wait_quiet(slice_s: float = 0.005, busy: float = 0.1, limit_s: float = 0.5) -> float:
    """Sleep until this process used under ``busy`` of one core over a ``slice_s`` window
    (its idle worker threads stopped spinning), at most ``limit_s``; return the seconds waited."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit_s:
        c0, w0 = _cpu_s(), time.perf_counter()
        time.sleep(slice_s)
        if _cpu_s() - c0 < busy * (time.perf_counter() - w0):
            break
    return time.perf_counter() - t0


def summary_ms(seconds: list) -> dict:
    a = np.asarray(seconds) * 1e3
    return {"median_ms": float(np.median(a)), "p90_ms": float(np.percentile(a, 90)), "n": len(a)}


def accuracy(vectors: dict, reference: str) -> dict:
    """Cosine of each engine's embeddings to the reference's, and nearest-neighbour agreement."""
    ref = _unit(vectors[reference])
    ref_nn = _nearest(ref)
    out = {}
    for name, v in vectors.items():
        v = _unit(v)
        cos = (v * ref).sum(axis=1)
        out[name] = {"mean_cos": float(cos.mean()), "min_cos": float(cos.min()),
                     "nn_agreement": float((_nearest(v) == ref_nn).mean())}
    return out


def _unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def _nearest(v):
    sim = v @ v.T
    np.fill_diagonal(sim, -np.inf)
    return sim.argmax(axis=1)
