"""The kernels the native library exports, declared once: module, function, argument types.

Types are spelled as in ``runtime/kernels/isa.py`` (C-contiguous arrays, scalars).
Each entry becomes one C function ``eb_<name>`` whose parameters are, per
array argument, its data pointer and then its dimensions (int64), and per
scalar the scalar (booleans as int64); it returns the kernel's int result, or
0 for kernels that return nothing. ``library.py`` calls them with the same
Python arguments as the Numba dispatchers, so a binder does not care which it
holds. A kernel with several entries (``embed`` over int8 or float32 tables)
is dispatched on the arguments' dtypes.

Nothing here imports Numba: the runtime reads this table to call the library.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..kernels.isa import PATHS, SHARED, SHARED_MODULE, Kernel

F32, F32_2D, I32, I64, INT, F64 = "float32[::1]", "float32[:, ::1]", "int32[::1]", "int64[::1]", "int64", "float64"


@dataclass(frozen=True)
class Entry:
    """One exported C function: ``function`` of ``runtime/kernels/<module>.py`` for ``types``."""

    module: str
    function: str  # the jitted function called (a Numba dispatcher)
    types: tuple[str, ...]
    name: str  # the Python-facing name (several entries may share it)
    symbol: str  # the C symbol, eb_<unique>

    @property
    def array_specs(self) -> dict:
        """argument index -> (numpy dtype, ndim), for the caller's checks (computed once)."""
        import numpy as np

        cached = self.__dict__.get("_specs")
        if cached is None:
            cached = {i: (np.dtype(d), n) for i, d, n in self.arrays}
            object.__setattr__(self, "_specs", cached)
        return cached

    @property
    def arrays(self) -> tuple[tuple[int, str, int], ...]:
        """(argument index, dtype, ndim) of each array argument."""
        return tuple((i, t.removeprefix("readonly ").partition("[")[0], t.count(",") + 1)
                     for i, t in enumerate(self.types) if "[" in t)


def _entry(module, function, types, name=None, variant=""):
    name = name or function
    return Entry(module, function, tuple(types), name, f"eb_{module}_{function}{variant}")


# The ops' kernels, shared by every GEMM path (the types a forward passes; see
# tests/runtime/test_native.py, which compares them with what the Numba backend calls).
COMMON = (
    _entry("norm", "embed", (I32, I32, I32, "int8[:, ::1]", F32, F32_2D, F32_2D, F32, F32, F64, F32_2D), variant="_q"),
    _entry("norm", "embed", (I32, I32, I32, F32_2D, F32, F32_2D, F32_2D, F32, F32, F64, F32_2D), variant="_f"),
    _entry("norm", "add_norm", (F32_2D, F32_2D, F32, F32, F64, F32_2D)),
    _entry("heads", "layer_norm", (F32_2D, F32, F32, F64, F32_2D)),
    _entry("attention", "attention", (F32_2D, I64, INT, F32_2D, F32_2D)),
    _entry("residual", "add", (F32_2D, F32_2D, F32_2D)),
    _entry("residual", "mean_pool", (F32_2D, I64, F32_2D)),
    _entry("residual", "neighbours", (F32_2D, I64, INT, F32_2D)),
    _entry("gated", "geglu", (F32_2D, F32_2D)),
    _entry("rotary", "rotary", (F32_2D, I32, INT, "float64[::1]", F32_2D)),
    _entry("relative", "relative_attention", (F32_2D, I64, INT, F32_2D, INT, F32_2D, F32_2D)),
    _entry("attention_window", "attention_window", (F32_2D, I64, INT, INT, F32_2D, F32_2D)),
    _entry("disentangled", "disentangled_attention", (F32_2D, I64, INT, "float32[:, :, ::1]", "float32[:, :, ::1]",
                                                       I32, I32, INT, F32_2D, F32_2D)),
) + tuple(_entry(SHARED_MODULE, k.name, k.types) for k in SHARED)


def _path_entries(path: str, kernel: Kernel):
    """A path kernel's entries: its jitted functions (qlinear on AMX is two: serial and parallel)."""
    module = PATHS[path].module
    return tuple(_entry(module, d, kernel.types, name=kernel.name if len(kernel.compiled) == 1 else d)
                 for d in kernel.compiled)


def entries(path: str) -> tuple[Entry, ...]:
    """Every entry of the library for GEMM path ``path``."""
    isa = PATHS[path]
    own = _path_entries(path, isa.qlinear) + _path_entries(path, isa.gemm_i32)
    return COMMON + own


def cfunc_source(entry: Entry, returns_value: bool) -> str:
    """Python source of the ``@cfunc`` wrapper: pointers and sizes in, ``carray`` views, the kernel call."""
    params, views, call = [], [], []
    for i, t in enumerate(entry.types):
        if "[" in t:
            ndim = t.count(",") + 1
            dims = [f"d{i}_{j}" for j in range(ndim)]
            params += [f"p{i}"] + dims
            views.append(f"    a{i} = carray(p{i}, ({', '.join(dims)},))")
            call.append(f"a{i}")
        elif t == "boolean":
            params.append(f"s{i}")
            call.append(f"s{i} != 0")
        else:
            params.append(f"s{i}")
            call.append(f"s{i}")
    result = "return np.int64(r)" if returns_value else "return np.int64(0)"
    return "\n".join([f"def wrapper({', '.join(params)}):", *views,
                      f"    r = kernel({', '.join(call)})", f"    {result}", ""])


# NumPy type numbers of the dtypes entries use (int64 is NPY_LONG on LP64, NPY_LONGLONG from some constructors)
TYPE_NUMS = {"boolean": (0,), "int8": (1,), "uint8": (2,), "int16": (3,), "int32": (5,), "int64": (7, 9),
             "float32": (11,), "float64": (12,)}
BAD_ARGUMENT = -1000  # a thunk's result for argument i that is not what the entry takes: BAD_ARGUMENT - i

_THUNK_HEADER = """/* Generated by runtime/native/build.py from entries.py: one thunk per entry taking NumPy arrays.
   A thunk reads an array's data pointer, dimensions, flags and type number from the fields NumPy's
   C API lays out first (PyArrayObject_fields, PyArray_Descr; the same in NumPy 1 and 2), checks
   them, and calls the entry with pointers and sizes: no Python call per argument. library.py checks
   the layout on this NumPy before using the thunks. */
#include <stdint.h>
typedef struct { intptr_t refcnt; void *ob_type; void *typeobj; char kind, type, byteorder, flags; int type_num; } Descr;
typedef struct { intptr_t refcnt; void *ob_type; char *data; int nd; intptr_t *dims; intptr_t *strides;
                 void *base; Descr *descr; int flags; } Arr;
#define C_CONTIGUOUS 0x1
static int fits(const Arr *a, int nd, int t1, int t2) {
    return a->nd == nd && (a->flags & C_CONTIGUOUS) && (a->descr->type_num == t1 || a->descr->type_num == t2);
}
intptr_t edgebert_probe_array(const Arr *a, int what) {  /* library.py's layout check */
    return what == 0 ? (intptr_t)a->data : what == 1 ? a->nd : what == 2 ? a->dims[a->nd - 1]
         : what == 3 ? (a->flags & C_CONTIGUOUS) : a->descr->type_num;
}
"""


def thunk_source(all_entries) -> str:
    """C source of the thunks ``ebpy_<entry>`` over the entries ``eb_<entry>``."""
    ctype = {"ptr": "void *", "i64": "int64_t", "f64": "double", "f32": "float"}
    out = [_THUNK_HEADER]
    for e in all_entries:
        params = c_params(e)
        out.append(f"extern int64_t {e.symbol}({', '.join(ctype[k] for k in params)});")
        sig, checks, call = [], [], []
        for i, t in enumerate(e.types):
            if "[" in t:
                dtype, ndim = t.removeprefix("readonly ").partition("[")[0], t.count(",") + 1
                nums = TYPE_NUMS[dtype] * 2
                sig.append(f"const Arr *a{i}")
                checks.append(f"    if (!fits(a{i}, {ndim}, {nums[0]}, {nums[1]})) return {BAD_ARGUMENT - i};")
                call += [f"a{i}->data"] + [f"a{i}->dims[{j}]" for j in range(ndim)]
            else:
                kind = {"float64": "f64", "float32": "f32"}.get(t, "i64")
                sig.append(f"{ctype[kind]} s{i}")
                call.append(f"s{i}")
        out.append(f"int64_t ebpy_{e.symbol[3:]}({', '.join(sig)}) {{")
        out += checks
        out.append(f"    return {e.symbol}({', '.join(call)});\n}}\n")
    return "\n".join(out)


def c_params(entry: Entry) -> list[str]:
    """The C parameter kinds, in order: ``ptr``, ``i64`` (dims, ints, booleans), ``f64``, ``f32``."""
    out = []
    for t in entry.types:
        if "[" in t:
            out += ["ptr"] + ["i64"] * (t.count(",") + 1)
        elif t in ("float64",):
            out.append("f64")
        elif t in ("float32",):
            out.append("f32")
        else:
            out.append("i64")
    return out
