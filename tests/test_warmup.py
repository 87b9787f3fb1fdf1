"""Warm-up compiles through the real load path; the first-compile notice is printed once."""
from __future__ import annotations

from edgebert import warmup as wu

# CPU seconds the whole process may use during one idle second that starts
# 0.2 s after a call: workers spin ~1-2 ms before sleeping (GOMP_SPINCOUNT), so
# only stray wake-ups remain; a pool that kept spinning would use ~2 s (2 cores).
IDLE_SETTLE_S = 0.2
IDLE_CPU_BUDGET_S = 0.1


def test_warmup_runs_and_marks(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EDGEBERT_CACHE", str(tmp_path))
    seconds = wu.warmup(verbose=True)
    assert seconds > 0
    assert wu._marker().exists()
    assert "kernels ready" in capsys.readouterr().out


def test_first_compile_notice_once(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EDGEBERT_CACHE", str(tmp_path))
    wu.announce_first_compile()
    assert "compiling kernels for this CPU" in capsys.readouterr().err
    wu.announce_first_compile()
    assert capsys.readouterr().err == ""


def test_idle_workers_do_not_spin(tiny_int8):
    """After inference the worker threads go to sleep: an idle second costs (almost) no CPU."""
    import time

    import edgebert

    model = edgebert.load(tiny_int8, threads=2)
    model.embed(["warm the pool up"] * 8)
    time.sleep(IDLE_SETTLE_S)
    start = time.process_time()
    time.sleep(1.0)
    assert time.process_time() - start < IDLE_CPU_BUDGET_S


_COUNT_COMPILES = """
import sys
import numba
import edgebert

model = edgebert.load(sys.argv[1])
model.embed(["short"])
model.embed(["a longer text with more words in it " * 8] * 12, batch_size=12)
model.embed(["two", "short texts"], batch_size=2)
compiled = sorted(f"{name}{sig}" for mod_name, mod in list(sys.modules.items())
                  if mod_name.startswith("edgebert.runtime.kernels") and mod is not None
                  for name, fn in vars(mod).items() if isinstance(fn, numba.core.registry.CPUDispatcher)
                  for sig, n in fn.stats.cache_misses.items() if n)
print("compiled:", compiled)
"""


def test_warmup_leaves_nothing_to_compile(tiny_int8, tmp_path):
    """After `edgebert warmup`, a real model on short and long batches compiles no kernel (fresh cache)."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba"), EDGEBERT_CACHE=str(tmp_path / "marks"))
    warm = subprocess.run([sys.executable, "-c", "import edgebert.warmup as w; w.warmup(verbose=False)"],
                          env=env, capture_output=True, text=True, timeout=900)
    assert warm.returncode == 0, warm.stderr[-2000:]
    run = subprocess.run([sys.executable, "-c", _COUNT_COMPILES, str(tiny_int8)], env=env, capture_output=True,
                         text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "compiled: []" in run.stdout, run.stdout[-2000:]
