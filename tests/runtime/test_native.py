"""The native kernel library (runtime/native): built from the Numba kernels, loaded without Numba,
bit-identical to the JIT path on every model it runs."""
from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import edgebert
from edgebert.runtime.kernels import isa
from edgebert.runtime.kernels.packing import PACKERS
from edgebert.runtime.native import build as native_build
from edgebert.runtime.native import library

pytestmark = pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                                reason="no C compiler to link the native library")

# What a built library may still need from the system: the C library, libm and POSIX threads.
LIBM = tuple(f"{name}{suffix}" for name in ("exp", "log", "sin", "cos", "sincos", "sqrt", "tanh", "erf", "pow",
                                             "floor", "ceil", "fabs") for suffix in ("", "f"))
SYSTEM_SYMBOLS = LIBM + ("free", "malloc", "memcpy", "memset", "memmove", "sysconf", "abort",
                  "__tls_get_addr", "__register_atfork", "__cxa_finalize", "__gmon_start__",
                  "_ITM_deregisterTMCloneTable", "_ITM_registerTMCloneTable")

# float64 statistics on both sides, float32 in and out: a float32 rounding or two apart
ADD_NORM_TOL = 1e-5

TEXTS = ["A short one.", "A somewhat longer sentence about the weather in the mountains today.",
         "x " * 60, "Another.", "The quick brown fox jumps over the lazy dog, twice over, then sleeps."]


@pytest.fixture(scope="module")
def native_cache(tmp_path_factory):
    """A library built into a private cache; the environment points there while the module runs."""
    root = tmp_path_factory.mktemp("native-cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("EDGEBERT_CACHE", str(root))
    mp.delenv(library.NATIVE_ENV, raising=False)
    file = library.build()
    yield root, file
    mp.undo()


def _symbols(file, *flags):
    out = subprocess.run(["nm", "-D", *flags, str(file)], capture_output=True, text=True, check=True).stdout
    return {line.split()[-1].split("@")[0] for line in out.splitlines() if line.strip()}


def test_the_library_needs_only_libc_and_pthreads(native_cache):
    """Every Numba runtime entry point the objects call is answered by shim.c; Python is never called."""
    _, file = native_cache
    undefined = _symbols(file, "--undefined-only")
    unexpected = {s for s in undefined if not s.startswith("pthread_") and s not in SYSTEM_SYMBOLS}
    assert not unexpected, unexpected
    manifest = json.loads((file.parent / "manifest.json").read_text())
    defined = _symbols(file, "--defined-only")
    needed = set(manifest["undefined"]) - set(SYSTEM_SYMBOLS)
    assert needed <= defined, needed - defined  # the objects' needs, as build.py listed them
    assert {e.symbol for e in library.entries(manifest["path"])} <= defined
    assert native_build.NUMBA_VERSION == importlib.metadata.version("numba")


@pytest.mark.parametrize("path", list(PACKERS))
def test_numba_free_packers_match_each_path_module(path):
    qw = np.random.default_rng(1).integers(-127, 128, (70, 37)).astype(np.int8)
    module = importlib.import_module(f"edgebert.runtime.kernels.{isa.PATHS[path].module}")
    for got, want in zip(PACKERS[path](qw), module.pack(qw)):
        np.testing.assert_array_equal(got, want)


@pytest.fixture(scope="module")
def family_int8(tmp_path_factory, minilm_dir, pang_lee_texts):
    """int8 files of tiny ModernBERT (rotary, windowed and global attention, GeGLU, mean pooling),
    MPNet (relative attention) and DeBERTa v2/v3 (disentangled attention) models, by name."""
    pytest.importorskip("transformers")
    from edgebert.converters import convert
    from family_models import make_family_model
    from modernbert_models import make_modernbert

    out = {}
    folder = tmp_path_factory.mktemp("native-modernbert")
    src = make_modernbert(folder, "ModernBertForSequenceClassification", pang_lee_texts,
                          classifier_pooling="mean", num_labels=2)
    convert(src, folder / "m.edgebert", dtype="int8")
    out["modernbert"] = folder / "m.edgebert"
    folder = tmp_path_factory.mktemp("native-mpnet")
    src = make_family_model(folder, "mpnet", "MPNetModel", pang_lee_texts, minilm_dir)
    convert(src, folder / "m.edgebert", dtype="int8")
    out["mpnet"] = folder / "m.edgebert"
    from deberta_models import make_deberta

    for name, style, extra in (("v2", "v2", {}), ("v3", "v3", {}), ("conv", "v2", {"conv_kernel_size": 3})):
        folder = tmp_path_factory.mktemp(f"native-deberta-{name}")
        src = make_deberta(folder, "DebertaV2Model", pang_lee_texts, style, **extra)
        convert(src, folder / "m.edgebert", dtype="int8")
        out[f"deberta_{name}"] = folder / "m.edgebert"
    return out


@pytest.mark.parametrize("fixture", ["tiny_int8", "minilm_int8", "modernbert", "mpnet", "deberta_v2", "deberta_v3",
                                     "deberta_conv"])
def test_native_equals_the_jit_bit_for_bit(native_cache, request, fixture):
    """Same file, both backends: every graph output identical, at 1 and 2 threads, ragged batches."""
    path = (request.getfixturevalue(fixture) if fixture.endswith("int8")
            else request.getfixturevalue("family_int8")[fixture])
    native = edgebert.load(path, backend="native", threads=2)
    jit = edgebert.load(path, backend="numba", threads=2)
    assert native.backend == "native" and jit.backend == "numba"
    for texts in (TEXTS[:1], TEXTS, TEXTS * 7):
        np.testing.assert_array_equal(native.embed(texts), jit.embed(texts))
    ids = np.random.default_rng(3).integers(1, native.config["vocab_size"], (3, 40))
    mask = np.ones_like(ids)
    mask[1, 25:] = mask[2, 3:] = 0
    for threads in (1, 2):
        a = native._forward(*_packed(native, ids, mask), outputs=None, threads=threads)
        b = jit._forward(*_packed(jit, ids, mask), outputs=None, threads=threads)
        assert a.keys() == b.keys()
        for name in a:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def _packed(model, ids, mask):
    from edgebert.runtime.executor import pack_sequences

    return pack_sequences([(row[m.astype(bool)], np.zeros(int(m.sum()), np.int32)) for row, m in zip(ids, mask)])


def test_threads_calling_at_once_get_their_own_results(native_cache, tiny_int8):
    """Two Python threads in the library at once (one runs inline while the other holds the pool)."""
    model = edgebert.load(tiny_int8, backend="native", threads=2)
    want = {i: model.embed([t] * 9) for i, t in enumerate(TEXTS)}
    got, errors = {}, []

    def work(i):
        try:
            for _ in range(5):
                got[i] = model.embed([TEXTS[i]] * 9)
                np.testing.assert_array_equal(got[i], want[i])
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(len(TEXTS))]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=300)
    assert not errors and len(got) == len(TEXTS)


def _python(code, root, extra_env=None, timeout=300):
    env = {k: v for k, v in os.environ.items() if k != library.NATIVE_ENV}
    env.update(EDGEBERT_CACHE=str(root), **(extra_env or {}))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_a_process_with_the_library_never_imports_numba_or_llvmlite(native_cache, tiny_int8):
    root, _ = native_cache
    run = _python(f"""
        import sys, edgebert
        model = edgebert.load({str(tiny_int8)!r}, threads=2)
        v = model.embed(["hello there", "a b c"])
        print(model.backend, v.shape, "numba" in sys.modules, "llvmlite" in sys.modules)
        """, root)
    assert run.returncode == 0, run.stderr[-2000:]
    backend, *_, has_numba, has_llvmlite = run.stdout.split()
    assert (backend, has_numba, has_llvmlite) == ("native", "False", "False"), run.stdout


def test_a_forked_child_runs_kernels_on_new_threads(native_cache, tiny_int8):
    """The pool's threads do not survive fork(); the child starts its own instead of waiting for ever."""
    root, _ = native_cache
    run = _python(f"""
        import os, sys, numpy as np, edgebert
        model = edgebert.load({str(tiny_int8)!r}, threads=2)
        before = model.embed(["fork me"] * 8)
        pid = os.fork()
        if pid == 0:
            after = model.embed(["fork me"] * 8)
            os._exit(0 if np.array_equal(before, after) else 3)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status))
        """, root, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "0"


def test_without_a_library_auto_says_so_once_and_runs_the_jit(tmp_path, tiny_int8):
    run = _python(f"""
        import edgebert
        a = edgebert.load({str(tiny_int8)!r}); b = edgebert.load({str(tiny_int8)!r})
        print(a.backend, b.backend)
        """, tmp_path / "empty-cache")
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["numba", "numba"]
    assert run.stderr.count("no native kernel library") == 1


def test_native_off_and_ops_outside_the_library_use_the_jit(native_cache, tiny_int8, monkeypatch):
    monkeypatch.setenv(library.NATIVE_ENV, "off")
    assert edgebert.load(tiny_int8).backend == "numba"
    monkeypatch.setenv(library.NATIVE_ENV, "sometimes")
    with pytest.raises(ValueError, match="EDGEBERT_NATIVE"):
        edgebert.load(tiny_int8)
    monkeypatch.delenv(library.NATIVE_ENV)
    from edgebert.runtime.backend_numba import native_supports

    assert native_supports({"op": "attention", "attrs": {}})
    assert native_supports({"op": "attention", "attrs": {"window": 64}})
    assert native_supports({"op": "disentangled_attention", "attrs": {}})
    assert not native_supports({"op": "no_such_op", "attrs": {}})


def test_arguments_that_do_not_fit_are_refused_before_any_write(native_cache):
    """The thunks check dtype, dimensions and C-contiguity of every array; nothing runs on a misfit."""
    kernels = library.native_kernels()
    rng = np.random.default_rng(2)
    x, r = rng.standard_normal((2, 5, 8)).astype(np.float32)
    g, b = np.ones(8, np.float32), np.zeros(8, np.float32)
    out = np.full((5, 8), 7.0, np.float32)
    for bad in ((x, r, g.astype(np.float64), b, 1e-12, out), (x, r, [1.0] * 8, b, 1e-12, out),
                (np.asfortranarray(x), r, g, b, 1e-12, out), (x[None], r, g, b, 1e-12, out)):
        with pytest.raises(TypeError, match="add_norm: argument"):
            kernels.add_norm(*bad)
    assert (out == 7.0).all()
    kernels.add_norm(x, r, g, b, 1e-12, out)
    from edgebert.runtime.reference import add_norm_ref

    np.testing.assert_allclose(out, add_norm_ref(x, r, g, b, 1e-12), atol=ADD_NORM_TOL)


def _native_paths_here():
    from edgebert.runtime.kernels import cpu

    return [p for p in library.NATIVE_PATHS if p in cpu.available_paths()]


@pytest.mark.parametrize("path", _native_paths_here())
def test_every_path_this_cpu_runs_is_bit_identical_native_and_jit(native_cache, tiny_int8, monkeypatch, path):
    """EDGEBERT_KERNEL forces a GEMM path for both backends; each path's library matches its JIT."""
    monkeypatch.setenv("EDGEBERT_KERNEL", path)
    assert library.native_path() == path
    native = edgebert.load(tiny_int8, backend="native", threads=2)
    jit = edgebert.load(tiny_int8, backend="numba", threads=2)
    assert native.executor.native.path == path
    assert {p.path for p in jit.executor.packed.values()} == {path}
    for texts in (TEXTS[:1], TEXTS * 5):
        np.testing.assert_array_equal(native.embed(texts), jit.embed(texts))
