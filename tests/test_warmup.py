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
