"""Warm-up compiles through the real load path; the first-compile notice is printed once."""
from __future__ import annotations

from edgebert import warmup as wu

# CPU seconds the whole process may use during one idle second after a call:
# workers spin ~1-2 ms before sleeping (GOMP_SPINCOUNT); a spinning pool would use ~2 s.
IDLE_CPU_BUDGET_S = 0.05


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
    start = time.process_time()
    time.sleep(1.0)
    assert time.process_time() - start < IDLE_CPU_BUDGET_S
