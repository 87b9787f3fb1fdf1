"""Path x kernel x signature from the ISA table (``isa.py``), and compiling them.

    for job in jobs(("avx2",)):   # default: every path this CPU runs
        compile_job(job)          # or load it from Numba's disk cache

``edgebert warmup`` compiles the jobs of the path in use this way. It still
runs a tiny model afterwards, for the kernels outside this table (embedding,
attention, norms: not per-ISA, and with no declared signatures yet; a
per-op backend registry is where they would get them). Compiling a kernel
for its declared types is what the first call with those types does (the
same overload and disk-cache key, the same code); tests/runtime/test_isa.py
checks that a forward pass calls the int8 kernels with exactly the declared
types, so warm-up compiles nothing a model would not and misses nothing it
would. Only paths this CPU runs may be compiled: an instruction it lacks
aborts the process.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

from .isa import PATHS, SHARED, SHARED_MODULE, kernels


@dataclass(frozen=True)
class Job:
    """One jitted function to compile for one signature."""

    path: str | None  # None: gemm.py's own kernels, the same on every path (isa.SHARED)
    module: str
    kernel: str  # the entry point gemm.py calls
    dispatcher: str  # the jitted function behind it
    types: tuple[str, ...]  # argument types, as declared in isa.py

    def function(self):
        """The Numba dispatcher (imports the module: compiles nothing)."""
        return getattr(importlib.import_module(f".{self.module}", __package__), self.dispatcher)

    def signature(self) -> tuple:
        """The argument types as Numba types: the key of the dispatcher's overloads and disk cache."""
        return tuple(numba_type(t) for t in self.types)


def jobs(paths=None, inference_only=True):
    """The jobs of ``paths`` (default: every path this CPU runs) and the shared kernels, each once.

    ``inference_only`` leaves out kernels that only benchmarks and tests call.
    """
    if paths is None:
        from .cpu import available_paths

        paths = available_paths()
    entries = [(None, SHARED_MODULE, k) for k in SHARED]
    entries += [(name, PATHS[name].module, k) for name in paths for k in kernels(PATHS[name])]
    seen, out = set(), []
    for path, module, kernel in entries:
        for dispatcher in kernel.compiled:
            key = (module, dispatcher, kernel.types)
            if (kernel.at_inference or not inference_only) and key not in seen:
                seen.add(key)
                out.append(Job(path, module, kernel.name, dispatcher, kernel.types))
    return out


def compile_job(job):
    """Compile ``job`` (or load it from the disk cache); refused for a path this CPU cannot run."""
    from .cpu import available_paths

    if job.path is not None and job.path not in available_paths():
        raise ValueError(f"this CPU cannot run kernel path {job.path!r}")
    job.function().compile(job.signature())


def numba_type(spec):
    """``"float32[:, ::1]"``, ``"readonly int8[::1]"``, ``"int64"``... -> the Numba type."""
    from numba import types

    readonly = spec.startswith("readonly ")
    name, bracket, dims = spec.removeprefix("readonly ").partition("[")
    dtype = getattr(types, name)
    if not bracket:
        return dtype
    if not dims.endswith("::1]"):
        raise ValueError(f"{spec!r}: only C-contiguous arrays are declared")
    return types.Array(dtype, dims.count(",") + 1, "C", readonly=readonly)
