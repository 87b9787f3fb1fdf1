"""Batches side by side (edgebert/parallel.py): same bits, every batch once, errors surface,
and a model shared by user threads gives each its own buffers."""
from __future__ import annotations

import threading

import numba
import numpy as np
import pytest

import edgebert
from edgebert import parallel
from edgebert.parallel import BatchRunner

needs_two = pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 cores")

# 40 texts of many lengths: 10 batches of 4
TEXTS = [("word " * (1 + (7 * i) % 37)).strip() + f" {i}." for i in range(40)]


@pytest.fixture(scope="module")
def models(tiny_int8):
    one, two = edgebert.load(tiny_int8, threads=1), edgebert.load(tiny_int8, threads=2)
    one.embed(TEXTS[:2])  # a parallel kernel has run: Numba's threading layer is known
    return one, two


@needs_two
def test_side_by_side_same_bits_as_one_thread(models):
    one, two = models
    assert two._batches.workers(10) == 2  # the test exercises the side-by-side path
    np.testing.assert_array_equal(two.embed(TEXTS, batch_size=4), one.embed(TEXTS, batch_size=4))


@needs_two
def test_forward_sequences_side_by_side(models):
    one, two = models
    encoded = one.tokenize(TEXTS)
    a, b = one.forward_sequences(encoded, batch_size=4), two.forward_sequences(encoded, batch_size=4)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for name in x:
            np.testing.assert_array_equal(x[name], y[name])


def _in_threads(fn, n):
    """fn(k) for k in 0..n-1, each on its own thread at once -> [results]; re-raises a thread's error."""
    results, errors = [None] * n, []

    def run(k):
        try:
            results[k] = fn(k)
        except BaseException as e:  # noqa: BLE001 - re-raised below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread did not finish"
    if errors:
        raise errors[0]
    return results


def test_user_threads_sharing_a_model_get_their_own_buffers(models):
    """Each calling thread runs on its own workspace: no thread sees another's activations."""
    one, _ = models
    expected = one.embed(TEXTS, batch_size=4)
    results = _in_threads(lambda k: [one.embed(TEXTS[k::4], batch_size=2) for _ in range(3)], 4)
    for k in range(4):
        for got in results[k]:
            np.testing.assert_array_equal(got, expected[k::4])


@needs_two
def test_two_callers_side_by_side_share_the_pool(models):
    """Two user threads each running many batches side by side on one model: both finish
    (the pool is shared, no call waits on the other's batches) with the single-call bits."""
    one, two = models
    expected = one.embed(TEXTS, batch_size=4)
    for got in _in_threads(lambda k: two.embed(TEXTS, batch_size=4), 2):
        np.testing.assert_array_equal(got, expected)


def test_worker_count(monkeypatch):
    monkeypatch.setattr(parallel, "_concurrent_calls_safe", lambda: True)
    runner = BatchRunner(4)
    assert [runner.workers(n) for n in (1, 3, 4, 7, 8, 100)] == [1, 1, 2, 3, 4, 4]
    assert BatchRunner(1).workers(100) == 1
    monkeypatch.setattr(parallel, "_concurrent_calls_safe", lambda: False)  # workqueue layer
    assert runner.workers(100) == 1


def test_every_batch_once_longest_first(monkeypatch):
    monkeypatch.setattr(parallel, "_concurrent_calls_safe", lambda: True)
    seen, lock = [], threading.Lock()

    def work(batch, kernel_threads):
        assert kernel_threads == 1
        with lock:
            seen.append(batch)

    BatchRunner(3).run(list(range(30)), work)
    assert sorted(seen) == list(range(30))
    assert seen[:3] == sorted(seen[:3], reverse=True) and min(seen[:3]) >= 27  # started from the end


def test_one_at_a_time_on_all_threads_with_few_batches(monkeypatch):
    monkeypatch.setattr(parallel, "_concurrent_calls_safe", lambda: True)
    calls = []
    BatchRunner(2).run([0, 1, 2], lambda b, t: calls.append((b, t)))
    assert calls == [(0, 2), (1, 2), (2, 2)]  # in order, all threads per batch


@pytest.mark.parametrize("failing", [0, 19])  # run by the calling thread first / late by a pool worker
def test_an_error_in_any_batch_reaches_the_caller(monkeypatch, failing):
    monkeypatch.setattr(parallel, "_concurrent_calls_safe", lambda: True)
    done = []

    def work(batch, kernel_threads):
        if batch == failing:
            raise ValueError(f"batch {batch}")
        done.append(batch)

    with pytest.raises(ValueError, match=f"batch {failing}"):
        BatchRunner(2).run(list(range(20)), work)
    assert failing not in done


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_a_forked_child_runs_batches_side_by_side(monkeypatch):
    """The child of a fork inherits the pool object without its threads; it must start its own
    (before the fix the child waited for ever on work no thread would run)."""
    import os

    monkeypatch.setattr(parallel, "_concurrent_calls_safe", lambda: True)
    runner, seen = BatchRunner(2), []
    runner.run(list(range(8)), lambda b, t: seen.append(b))  # the parent's pool is up
    assert sorted(seen) == list(range(8))
    pid = os.fork()
    if pid == 0:  # child: run side by side again, exit 0 only if every batch ran
        try:
            done = []
            watchdog = threading.Timer(30, os._exit, args=(3,))  # a hang exits 3
            watchdog.start()
            runner.run(list(range(8)), lambda b, t: done.append(b))
            os._exit(0 if sorted(done) == list(range(8)) else 2)
        finally:
            os._exit(4)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_threading_layer_check_reads_numba(monkeypatch):
    monkeypatch.setattr(parallel, "_safe_layer", False)  # forget what this process's layer is
    monkeypatch.setattr(numba, "threading_layer", lambda: "workqueue")
    assert parallel._concurrent_calls_safe() is False
    assert parallel.kernel_guard() is parallel._SERIAL
    monkeypatch.setattr(numba, "threading_layer", lambda: "omp")
    assert parallel._concurrent_calls_safe() is True
    assert parallel.kernel_guard() is not parallel._SERIAL
    monkeypatch.setattr(parallel, "_safe_layer", False)

    def unknown():
        raise ValueError("Threading layer is not initialized.")
    monkeypatch.setattr(numba, "threading_layer", unknown)
    assert parallel._concurrent_calls_safe() is False


_WORKQUEUE_SCRIPT = """
import sys, threading, numpy as np, numba, edgebert
model = edgebert.load(sys.argv[1], threads=2, backend="numba")  # the JIT: Numba's workqueue layer is the subject
texts = [f"text number {i} " * (1 + i % 7) for i in range(24)]
expected = model.embed(texts, batch_size=4)
assert numba.threading_layer() == "workqueue", numba.threading_layer()
out = {}
def call(k):
    for _ in range(3):
        out[k] = model.embed(texts, batch_size=4)
threads = [threading.Thread(target=call, args=(k,)) for k in range(3)]
[t.start() for t in threads]; [t.join() for t in threads]
print("same", all(np.array_equal(v, expected) for v in out.values()))
"""


@needs_two
def test_workqueue_layer_survives_user_threads(tiny_int8):
    """Numba's workqueue layer (its fallback without OpenMP, e.g. macOS without libomp)
    aborts the process when two threads launch parallel kernels at once: forward passes
    take a process-wide lock there. Without it this child dies with SIGABRT (measured)."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, NUMBA_THREADING_LAYER="workqueue")
    r = subprocess.run([sys.executable, "-c", _WORKQUEUE_SCRIPT, str(tiny_int8)], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().endswith("same True")
