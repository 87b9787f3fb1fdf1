"""runtime.startup: Numba imported without its scipy probes, and nothing lost by it."""
import importlib.util
import subprocess
import sys

import pytest

SCRIPT = """
import sys
import numpy as np
import edgebert
model = edgebert.load(sys.argv[1], threads=1)
model.embed(["one sentence"])
print("scipy imported by edgebert:", "scipy" in sys.modules)
import numba

@numba.njit
def dot(a, b):
    return np.dot(a, b)

@numba.njit
def corr(a, b):
    return np.correlate(a, b)

print("np.dot in user code:", dot(np.arange(3.0), np.arange(3.0)), corr(np.ones(3), np.ones(3))[0])
"""


@pytest.mark.skipif(importlib.util.find_spec("scipy") is None, reason="the probes only cost anything with scipy installed")
def test_first_embedding_without_scipy_and_user_blas_still_works(tiny_int8):
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tiny_int8)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "scipy imported by edgebert: False" in out.stdout
    assert "np.dot in user code: 5.0 3.0" in out.stdout  # BLAS-backed np.dot still available to the user


def test_wide_vectors_only_where_they_pay_and_never_over_the_user(monkeypatch):
    import llvmlite.binding as llvm

    from edgebert.runtime import startup

    monkeypatch.delenv("NUMBA_CPU_FEATURES", raising=False)
    monkeypatch.delenv("NUMBA_CPU_NAME", raising=False)
    features = startup.wide_vector_features()
    host = llvm.get_host_cpu_features()
    if host.get("avx512f") and llvm.get_host_cpu_name() not in startup._KEEP_256:
        assert features == host.flatten() + ",-prefer-256-bit"
    else:
        assert features is None
    monkeypatch.setenv("NUMBA_CPU_FEATURES", "+avx2")
    assert startup.wide_vector_features() is None  # the user's choice wins
    monkeypatch.delenv("NUMBA_CPU_FEATURES")
    monkeypatch.setattr(llvm, "get_host_cpu_name", lambda: "cascadelake")
    assert startup.wide_vector_features() is None  # Skylake-era clocks drop under 512-bit work


_EMBED = """
import sys
import numba
import numpy as np
import edgebert

model = edgebert.load(sys.argv[1], threads=2, backend="numba")  # the JIT: its threading layers are the subject
vectors = model.embed(["a first text", "a second, longer text with more words in it " * 6, "x"])
print(numba.threading_layer(), vectors.tobytes().hex())
"""


def _has_tbb():
    import importlib.metadata

    try:
        return importlib.metadata.files("tbb") is not None
    except importlib.metadata.PackageNotFoundError:
        return False


@pytest.mark.skipif(not (_has_tbb() and sys.platform.startswith("linux")), reason="pip's tbb: Linux x86-64 only")
def test_tbb_layer_on_request_gives_the_same_bits(tiny_int8):
    import os

    runs = {}
    for layer in ("omp", "tbb"):
        out = subprocess.run([sys.executable, "-c", _EMBED, str(tiny_int8)], capture_output=True, text=True,
                             timeout=600, env=dict(os.environ, NUMBA_THREADING_LAYER=layer))
        assert out.returncode == 0, out.stderr[-2000:]
        got_layer, digest = out.stdout.split()
        assert got_layer == layer
        runs[layer] = digest
    assert runs["omp"] == runs["tbb"]
