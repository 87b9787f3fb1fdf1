"""Build the native kernel library for one GEMM path: Numba compiles, LLVM emits, cc links.

    python -m edgebert.runtime.native.build --path avx2 --out DIR

For every entry of ``entries.py``: compile the kernel for its declared types
(Numba's disk cache serves kernels compiled before), wrap it in a ``@cfunc``
taking pointers and sizes, take the wrapper's whole LLVM module (the kernel
and its parallel gufuncs are linked into it), make every definition but the
entry point internal, rename the Python C-API and GIL symbols that only
error paths reach to the shim's stubs, and emit a position-independent object
for the CPU Numba compiles for (its name and feature string, so the code is
the code the JIT runs: bit-identical results). ``shim.c`` (threading layer,
scheduler, allocation entry points, stubs) and the objects are linked with
the system C compiler into ``DIR/libedgebert-<path>.so``, with one generated
thunk per entry that takes NumPy arrays (``entries.thunk_source``). Runs in its own
process (``library.build``): a kernel whose instructions the CPU lacks aborts
LLVM, and the CPU target is fixed once per process.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .entries import Entry, c_params, cfunc_source, entries, thunk_source

SHIM = Path(__file__).with_name("shim.c")
NUMBA_VERSION = "0.68.1"  # the version whose runtime entry points shim.c answers (test_native checks the symbols)
# Symbols the objects may leave to the C library.
LIBC = frozenset({"memset", "memcpy", "memmove", "malloc", "free", "abort"})
# Reached only on error paths or around the parallel wrapper: answered by shim.c's edgebert_stub_<name>.
STUBBED_PREFIXES = ("Py", "_Py")
STUBBED = frozenset({"numba_gil_ensure", "numba_gil_release", "numba_unpickle", "numba_do_raise",
                     "numba_runtime_build_excinfo_struct", "printf"})


def _numba_types(entry: Entry):
    """(the kernel's Numba signature, the C parameters' Numba types: a typed pointer per array, then its dims)."""
    from numba import types

    from ..kernels.precompile import numba_type

    sig = tuple(numba_type(t) for t in entry.types)
    scalar = {"i64": types.int64, "f64": types.float64, "f32": types.float32}
    pointers = iter(types.CPointer(sig[i].dtype) for i, _, _ in entry.arrays)  # one per array, in order
    return sig, [next(pointers) if kind == "ptr" else scalar[kind] for kind in c_params(entry)]


def compile_entry(entry: Entry):
    """The ``@cfunc`` for ``entry`` (compiles the kernel for its declared types first)."""
    import importlib

    import numpy as np
    from numba import carray, cfunc, types

    kernel = getattr(importlib.import_module(f"edgebert.runtime.kernels.{entry.module}"), entry.function)
    sig, c_types = _numba_types(entry)
    kernel.compile(sig)
    returns_value = kernel.overloads[sig].signature.return_type != types.none
    scope = {"carray": carray, "kernel": kernel, "np": np}
    exec(compile(cfunc_source(entry, returns_value), f"<native entry {entry.symbol}>", "exec"), scope)
    return cfunc(types.int64(*c_types), error_model="numpy")(scope["wrapper"])


def target_machine():
    """LLVM target machine for the CPU and features Numba compiles for here, emitting PIC objects."""
    import llvmlite.binding as llb
    from numba.core import config
    from numba.core.registry import cpu_target

    codegen = cpu_target.target_context.codegen()
    target = llb.Target.from_triple(llb.get_process_triple())
    return target.create_target_machine(cpu=codegen._get_host_cpu_name(), features=codegen._tm_features,
                                        opt=config.OPT, reloc="pic", codemodel="default")


def object_code(cf, symbol: str, tm) -> tuple[bytes, set[str]]:
    """(object bytes, undefined symbols) of cfunc ``cf`` exported as ``symbol``."""
    import llvmlite.binding as llb

    mod = llb.parse_assembly(cf.inspect_llvm())
    mod.triple, mod.data_layout = tm.triple, str(tm.target_data)
    for fn in mod.functions:
        if fn.is_declaration:
            if fn.name.startswith(STUBBED_PREFIXES) or fn.name in STUBBED:
                fn.name = f"edgebert_stub_{fn.name}"
        elif fn.name == cf.native_name:
            fn.name = symbol
        else:
            fn.linkage = llb.Linkage.internal
    for gv in mod.global_variables:
        if gv.is_declaration:
            if gv.name.startswith(STUBBED_PREFIXES):
                gv.name = f"edgebert_stub_{gv.name}"
        else:
            gv.linkage = llb.Linkage.internal
    mod.verify()
    undefined = {f.name for f in mod.functions if f.is_declaration and not f.name.startswith("llvm.")}
    undefined |= {g.name for g in mod.global_variables if g.is_declaration}
    return tm.emit_object(mod), undefined


def build(path: str, out_dir: Path, cc: str | None = None) -> Path:
    """Build ``libedgebert-<path>.so`` in ``out_dir`` (atomically: a reader never sees half a library)."""
    from ..startup import import_numba

    numba = import_numba()
    if numba.__version__ != NUMBA_VERSION:
        raise RuntimeError(f"the native shim answers Numba {NUMBA_VERSION}'s entry points; this is {numba.__version__}")
    cc = cc or shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        raise RuntimeError("no C compiler (cc, gcc or clang) to link the native kernel library")
    tm = target_machine()
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        objects, undefined, symbols = [], set(), []
        for entry in entries(path):
            code, needs = object_code(compile_entry(entry), entry.symbol, tm)
            obj = Path(tmp, entry.symbol + ".o")
            obj.write_bytes(code)
            objects.append(str(obj))
            undefined |= needs
            symbols.append(entry.symbol)
        thunks = Path(tmp, "thunks.c")
        thunks.write_text(thunk_source(entries(path)))
        lib = Path(tmp, f"libedgebert-{path}.so")
        cmd = [cc, "-shared", "-O2", "-fPIC", "-o", str(lib), str(SHIM), str(thunks), *objects, "-lpthread", "-lm"]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"linking the native library failed ({' '.join(cmd[:2])} ...):\n{done.stderr[-2000:]}")
        info = {"path": path, "numba": numba.__version__, "cpu": tm.name if hasattr(tm, "name") else "",
                "symbols": symbols, "undefined": sorted(undefined)}
        Path(tmp, "manifest.json").write_text(json.dumps(info, indent=1))
        final = out_dir / lib.name
        os.replace(Path(tmp, "manifest.json"), out_dir / "manifest.json")
        os.replace(lib, final)  # last: its presence means the build is complete
    return final


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--path", required=True, help="GEMM path (isa.PATHS) the library is built for")
    ap.add_argument("--out", required=True, type=Path, help="folder for the library and its manifest")
    args = ap.parse_args(argv)
    print(build(args.path, args.out))


if __name__ == "__main__":
    sys.exit(main())
