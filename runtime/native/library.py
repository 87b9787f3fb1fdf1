"""Find, build and load the native kernel library for this CPU; call its kernels like Numba's.

    kernels = native_kernels()          # None where there is no library (the JIT path is then used)
    kernels.add_norm(x, r, g, b, eps, out)

Nothing here imports Numba or llvmlite: the CPU is read from /proc/cpuinfo
(x86 flags) or AT_HWCAP (aarch64), the library is opened with ctypes. A
library is specific to this CPU model and flags, the GEMM path, the kernel
sources and the Numba version that compiled them (the folder name is a hash of
all of them), so an edit to a kernel or a new machine never loads a stale
one. It is built by ``build.py`` in a child process: by ``edgebert warmup``,
or on first use when ``$EDGEBERT_NATIVE`` is ``build`` (see docs/native.md).
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

from ..kernels.cpu import ENV_VAR, arm64_features, auxv_hwcaps
from ..kernels.isa import ARM64, PATHS
from .entries import BAD_ARGUMENT, entries

HERE = Path(__file__).parent
KERNELS = HERE.parent / "kernels"
NATIVE_ENV = "EDGEBERT_NATIVE"  # auto (default): use a built library; build: also build one if missing; off: never
NATIVE_MODES = ("auto", "build", "off")
# /proc/cpuinfo flag -> LLVM feature name, for the features isa.PATHS asks for
_X86_FLAGS = {"avx2": "avx2", "avx512f": "avx512f", "avx512bw": "avx512bw", "avx512_vnni": "avx512vnni",
              "avx_vnni": "avxvnni", "amx_tile": "amx-tile", "amx_int8": "amx-int8"}
# Paths whose int8 linear is one jitted function (AMX picks between two in Python: not in the library yet)
NATIVE_PATHS = tuple(name for name, p in PATHS.items() if len(p.qlinear.compiled) == 1)
_CTYPES = {"i64": ctypes.c_int64, "f64": ctypes.c_double, "f32": ctypes.c_float}
_SCALAR_KIND = {"float64": "f64", "float32": "f32"}


def _check_layout(lib) -> None:
    """The thunks read NumPy's array fields directly: check they find what NumPy says, on this NumPy."""
    probe = lib.edgebert_probe_array
    probe.argtypes, probe.restype = [ctypes.py_object, ctypes.c_int], ctypes.c_ssize_t
    for a in (np.zeros((3, 5), np.float32), np.arange(7, dtype=np.int64)[2:], np.zeros((2, 4), np.int8)[:, :3]):
        seen = [probe(a, k) for k in range(5)]
        want = [a.__array_interface__["data"][0], a.ndim, a.shape[-1], int(a.flags.c_contiguous), a.dtype.num]
        if seen != want:
            raise RuntimeError(f"NumPy {np.__version__}'s array layout is not the one the native thunks read "
                               f"({seen} != {want})")


def max_threads() -> int:
    """Numba's default pool size, without Numba: $NUMBA_NUM_THREADS, else the CPUs this process may use."""
    env = os.environ.get("NUMBA_NUM_THREADS", "").strip()
    if env:
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def mode() -> str:
    value = os.environ.get(NATIVE_ENV, "auto").strip().lower() or "auto"
    if value not in NATIVE_MODES:
        raise ValueError(f"{NATIVE_ENV}={value!r} is not one of {', '.join(NATIVE_MODES)}")
    return value


@functools.lru_cache(maxsize=1)
def cpu_identity() -> tuple[str, frozenset]:
    """(CPU model line, LLVM-named features) of this machine, without LLVM."""
    machine = platform.machine().lower()
    if machine in ARM64:
        return machine, arm64_features(*auxv_hwcaps())
    model, flags = machine, set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model == machine:
                    model = value.strip()
                elif key == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    return model, frozenset(llvm for flag, llvm in _X86_FLAGS.items() if flag in flags)


def native_path() -> str:
    """The GEMM path the library serves here: ``$EDGEBERT_KERNEL`` or the best this CPU runs.

    AMX CPUs get the AVX-512 VNNI library (same results: every path computes the same int8 products)."""
    machine = platform.machine().lower()
    features = cpu_identity()[1]
    runnable = [name for name in NATIVE_PATHS
                if (not PATHS[name].machines or machine in PATHS[name].machines)
                and all(f in features for f in PATHS[name].features)]
    requested = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if requested != "auto":
        if requested not in runnable:
            raise ValueError(f"{ENV_VAR}={requested!r}: no native library for it on this CPU "
                             f"(native paths here: {', '.join(runnable)})")
        return requested
    return runnable[0]


def library_dir(path: str) -> Path:
    """Where the library for ``path`` on this CPU with these sources lives (under the cache root,
    read each call: tests and users may point $EDGEBERT_CACHE elsewhere)."""
    from edgebert.settings import cache_root

    return cache_root() / "native" / f"{path}-{_identity(path)}"


@functools.lru_cache(maxsize=None)
def _identity(path: str) -> str:
    """Hash of CPU, path and the kernel and native sources: read once per process, not at every
    model load (about 30 files). The Numba version is among the sources: build.py pins it and
    builds with no other. (Not importlib.metadata.version: importing importlib.metadata and
    scanning the installed distributions took 30-45 ms of a 0.6 s cold start.)"""
    h = hashlib.sha256()
    model, features = cpu_identity()
    h.update(f"{model}|{sorted(features)}|{path}|{platform.machine()}".encode())
    for f in sorted([*KERNELS.glob("*.py"), *HERE.glob("*.py"), HERE / "shim.c"]):
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()[:16]


def library_file(path: str) -> Path:
    return library_dir(path) / f"libedgebert-{path}.so"


def build(path: str | None = None, timeout: float = 1800) -> Path:
    """Build the library for ``path`` (default: this CPU's) in a child process; its file."""
    path = path or native_path()
    out = library_dir(path)
    cmd = [sys.executable, "-m", "edgebert.runtime.native.build", "--path", path, "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0 or not library_file(path).exists():
        raise RuntimeError(f"building the native kernel library failed:\n{(done.stderr or done.stdout)[-3000:]}")
    return library_file(path)


class _Function:
    """A kernel of the library, called with the Numba dispatcher's arguments.

    Arrays go to the entry's C thunk as Python objects: it reads their data
    pointer, shape, flags and dtype itself and refuses ones that do not fit
    (``BAD_ARGUMENT - i``), so the next entry of the same name (another dtype) is
    tried, and a call costs about what a plain ctypes call does.
    """

    def __init__(self, name, variants):
        self.name = name
        self.variants = variants  # [(entry, thunk, array argument indices)]

    def __call__(self, *args):
        bad = 0
        for entry, thunk, arrays in self.variants:
            if len(args) != len(entry.types):
                continue
            for i in arrays:
                if not isinstance(args[i], np.ndarray):
                    raise TypeError(f"native kernel {self.name}: argument {i} must be a numpy array, "
                                    f"got {type(args[i]).__name__}")
            result = thunk(*args)
            if not BAD_ARGUMENT - len(args) < result <= BAD_ARGUMENT:
                return result
            bad = BAD_ARGUMENT - result
        shapes = [(str(getattr(a, "dtype", type(a).__name__)), getattr(a, "shape", "")) for a in args]
        raise TypeError(f"native kernel {self.name}: argument {bad} does not fit (dtype, dimensions or "
                        f"C-contiguity): {shapes}")


class NativeKernels:
    """The library's kernels as attributes (``kernels.embed``, ``kernels.qlinear_kernel`` ...)."""

    def __init__(self, file: Path, path: str):
        self.file, self.path = file, path
        self.lib = ctypes.CDLL(str(file))
        _check_layout(self.lib)
        grouped: dict[str, list] = {}
        for entry in entries(path):
            thunk = getattr(self.lib, "ebpy_" + entry.symbol[3:])
            arrays = [i for i, _, _ in entry.arrays]
            thunk.argtypes = [ctypes.py_object if i in arrays else _CTYPES[_SCALAR_KIND.get(t, "i64")]
                              for i, t in enumerate(entry.types)]
            thunk.restype = ctypes.c_int64
            grouped.setdefault(entry.name, []).append((entry, thunk, arrays))
        for name, variants in grouped.items():
            setattr(self, name, _Function(name, variants))
        self.lib.edgebert_set_default_threads.argtypes = [ctypes.c_int]
        self.lib.edgebert_set_default_threads(max_threads())
        self.lib.set_num_threads.argtypes = [ctypes.c_int]
        self.lib.set_parallel_chunksize.argtypes = [ctypes.c_size_t]
        self.lib.set_parallel_chunksize.restype = None
        self.lib.get_parallel_chunksize.restype = ctypes.c_size_t
        self.set_num_threads = self.lib.set_num_threads  # the calling thread's kernel threads
        self.set_chunk = self.lib.set_parallel_chunksize
        self.manifest = json.loads((file.parent / "manifest.json").read_text())

    @property
    def max_threads(self) -> int:
        """Threads a kernel may use here: $NUMBA_NUM_THREADS if set (as the JIT path), else the CPUs we may run on."""
        return max_threads()

    def run_dynamic(self, kernel, *args):
        """``kernel(*args)`` with chunks of one iteration handed out as threads free up (see gemm._dynamic)."""
        old = self.lib.get_parallel_chunksize()
        self.set_chunk(1)
        try:
            return kernel(*args)
        finally:
            self.set_chunk(old)

    def last_error(self) -> bool:
        """True if a kernel took an error path since the last call (the stubs record it)."""
        return bool(self.lib.edgebert_last_error())


_OPENED: dict[Path, NativeKernels] = {}
_NOTICED: set[str] = set()


def native_kernels(build_missing: bool = False) -> NativeKernels | None:
    """This CPU's library; None where there is none (or ``$EDGEBERT_NATIVE=off``). ``build_missing`` (or
    ``$EDGEBERT_NATIVE=build``): build it first where it is missing."""
    if mode() == "off":
        return None
    path = native_path()
    file = library_file(path)
    if file not in _OPENED:
        if not file.exists():
            if not (build_missing or mode() == "build"):
                return None
            build(path)
        _OPENED[file] = NativeKernels(file, path)
    return _OPENED[file]


def notice(message: str) -> None:
    """One line on stderr, once per process and message."""
    if message not in _NOTICED:
        _NOTICED.add(message)
        print(f"edgebert: {message}", file=sys.stderr, flush=True)
