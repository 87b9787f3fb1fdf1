"""The benchmark's worker processes (benchmarks/workers.py) and interleaving, on a stand-in engine:
no engine libraries, no timing asserted."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # benchmarks/ is not installed; plain `pytest` lacks the cwd
    sys.path.insert(0, str(ROOT))

from benchmarks import measure, workers  # noqa: E402


class Probe:
    """Stand-in engine, built in the worker process."""

    def __init__(self, factor: int):
        self.factor = factor

    def run(self, x):
        return x * self.factor

    def pid(self):
        return os.getpid()

    def env(self, name):
        return os.environ.get(name)

    def fail(self):
        raise ValueError("probe failure")


class Unbuildable:
    def __init__(self):
        raise OSError("no model here")


@pytest.fixture(scope="module")
def worker():
    with workers.Worker(Probe, 3, env=dict(workers.engine_env(1), PROBE_VAR="child")) as w:
        w.ready()
        yield w


def test_engine_runs_in_its_own_process(worker):
    assert worker.call("run", 14) == 42
    assert worker.call("pid") not in (os.getpid(), None)


def test_timed_call_returns_seconds(worker):
    seconds = worker.time("run", 2, warm=1, settle_s=0.001)
    assert isinstance(seconds, float) and seconds >= 0


def test_module_functions_run_in_the_worker(worker):
    assert worker.call(os.getpid) == worker.call("pid")


def test_worker_environment_is_the_given_one_not_the_parents(worker, monkeypatch):
    assert worker.call("env", "PROBE_VAR") == "child"
    assert os.environ.get("PROBE_VAR") is None  # the coordinator's own environment is restored
    monkeypatch.setenv("GOMP_SPINCOUNT", "7")  # as importing edgebert does in the coordinator
    with workers.Worker(Probe, 1, env=workers.engine_env(2)) as w:
        assert w.call("env", "GOMP_SPINCOUNT") == workers.START_ENV.get("GOMP_SPINCOUNT")
        assert w.call("env", "TOKENIZERS_PARALLELISM") == "true"
    assert os.environ["GOMP_SPINCOUNT"] == "7"


def test_errors_in_the_worker_raise_with_its_traceback(worker):
    with pytest.raises(workers.WorkerError, match="probe failure"):
        worker.call("fail")
    assert worker.call("run", 1) == 3  # and it goes on serving


def test_engine_that_cannot_be_built_raises_at_ready():
    with workers.Worker(Unbuildable) as w, pytest.raises(workers.WorkerError, match="no model here"):
        w.ready()


def test_close_ends_the_process():
    w = workers.Worker(Probe, 1)
    w.ready()
    w.close()
    assert not w.process.is_alive() and w.process.exitcode == 0


def test_interleaved_rotates_engines_and_keeps_their_seconds():
    order = []

    def call(name, seconds):
        def fn():
            order.append(name)
            return seconds
        return fn

    times = measure.interleaved({"a": call("a", 1.0), "b": call("b", 2.0), "c": call("c", 3.0)}, reps=3, warmup=0)
    assert times == {"a": [1.0] * 3, "b": [2.0] * 3, "c": [3.0] * 3}
    assert order == list("abc" "bca" "cab")
