"""Warm-up compiles through the real load path; the first-compile notice is printed once."""
from __future__ import annotations

import os

from edgebert import warmup as wu


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


def test_idle_workers_do_not_spin():
    import edgebert  # noqa: F401  (sets the default)

    assert os.environ["OMP_WAIT_POLICY"].upper() == "PASSIVE"
