"""The int8 linear kernel paths, declared once: one record each (like ONNX Runtime MLAS's platform table).

A record says what a CPU needs to run the path, how good it is (``rank``,
0 best), which module under ``runtime/kernels`` implements it, the constants
``gemm.py`` sizes the activation scratch with, and the kernels it provides
with the argument types they are compiled for. ``cpu.py`` derives its choices
and feature checks from ``PATHS``; ``gemm.py`` asks a path's record for its
constants and kernel names; ``precompile.py`` enumerates path x kernel x
signature for warm-up (and an ahead-of-time build). Nothing here imports
NumPy or Numba: reading the table compiles nothing.

The modules keep their own ``MR``/``SHIFT`` (their kernels compile them in,
and Numba's disk cache is keyed on the kernel's own file: a constant read from
here would stay stale in the cache after an edit here); tests/runtime/test_isa.py
checks that every module agrees with its record and provides every kernel it
declares.

Argument types are spelled as in Numba signatures, C-contiguous arrays only:
``float32[:, ::1]``, ``uint8[::1]``, ``int64``, ``boolean``; ``readonly ``
in front marks a read-only (memory-mapped model) array. They are what the
runtime passes: a call with other types compiles another specialisation.
"""
from __future__ import annotations

from dataclasses import dataclass

X86 = ("x86_64", "amd64")  # platform.machine() values
ARM64 = ("aarch64", "arm64")


@dataclass(frozen=True)
class Kernel:
    """One entry point of a path's module and the argument types it is compiled for."""

    name: str  # the module attribute gemm.py calls
    params: tuple[str, ...]  # its parameter names, in order
    types: tuple[str, ...]  # one argument type per parameter
    dispatchers: tuple[str, ...] = ()  # the jitted functions behind a plain-Python entry point; () = ``name`` itself
    at_inference: bool = True  # False: only benchmarks and tests call it, so warm-up does not compile it

    def __post_init__(self):
        if len(self.params) != len(self.types):
            raise ValueError(f"{self.name}: {len(self.params)} parameters but {len(self.types)} types")

    @property
    def compiled(self) -> tuple[str, ...]:
        """The names of the jitted functions to compile for this entry point."""
        return self.dispatchers or (self.name,)


@dataclass(frozen=True)
class IsaPath:
    """One kernel path: what it needs, its rank, its module, its constants and kernels."""

    name: str
    rank: int  # 0 is the best; the best path the CPU runs is chosen
    machines: tuple[str, ...]  # platform.machine() values it exists on; () = any
    features: tuple[str, ...]  # LLVM host CPU features it needs, all of them
    module: str  # under runtime/kernels
    mr: int  # rows per register tile: activation scratch is padded to a multiple of it
    shift: int  # activations are stored as q + shift
    scratch_dtype: str  # the activation scratch rows' dtype
    qlinear: Kernel  # quantize + GEMM + dequant (+GELU), fused
    gemm_i32: Kernel  # int8 GEMM on prepared rows (benchmarks, tests)
    ffn: Kernel | None = None  # a whole feed-forward block (gemm.ffn), where the path has one
    pack: str = "pack"  # the module's weight packer, qw (N, K) int8 -> (w, corr, Kp)
    by_name: bool = True  # may be chosen: EDGEBERT_KERNEL=<name>, pack_linear(path=<name>)
    needs_tile_permission: bool = False  # Linux must grant AMX tile data first (cpu.amx_permitted)


F32, F32_2D, I32, INT, BOOL = "float32[::1]", "float32[:, ::1]", "int32[::1]", "int64", "boolean"
QLINEAR_PARAMS = ("x", "wp", "corr", "sw", "wsum", "bias", "in_scale", "out", "xq", "rowq", "Kp", "gelu")
GEMM_I32_PARAMS = ("xq", "wp", "corr", "out", "Kp")
FFN_PARAMS = ("x", "w1", "corr1", "sw1", "wsum1", "b1", "in1", "Kp1", "w2", "corr2", "sw2", "wsum2", "b2", "in2",
              "Kp2", "residual", "gamma", "beta", "eps", "out", "panel", "two_pass", "h_s", "xq1_s", "xq2_s",
              "rowq_s", "o2_s", "zeros2", "ones1")


def _qlinear(w, xq, dispatchers=()):
    """qlinear_kernel with packed weights of dtype ``w`` and activation rows of dtype ``xq``."""
    types = (F32_2D, f"{w}[::1]", I32, F32, F32, F32, F32, F32_2D, f"{xq}[::1]", F32_2D, INT, BOOL)
    return Kernel("qlinear_kernel", QLINEAR_PARAMS, types, dispatchers)


def _gemm_i32(w, xq, dispatchers=()):
    types = (f"{xq}[::1]", f"{w}[::1]", I32, "int32[:, ::1]", INT)
    return Kernel("gemm_i32_kernel", GEMM_I32_PARAMS, types, dispatchers, at_inference=False)


_AMX_FFN = Kernel("ffn_kernel", FFN_PARAMS, (
    F32_2D, "int8[::1]", I32, F32, F32, F32, F32, INT,  # x, then the up layer
    "int8[::1]", I32, F32, F32, F32, F32, INT,  # the down layer
    F32_2D, "readonly float32[::1]", "readonly float32[::1]", "float64", F32_2D, INT, BOOL,  # residual .. two_pass
    "float32[:, :, ::1]", "uint8[:, ::1]", "uint8[:, ::1]", "float32[:, :, :, ::1]", "float32[:, :, ::1]",  # per thread
    F32, F32))  # zeros2, ones1
_PORTABLE = dict(module="gemm_portable", mr=4, shift=0, scratch_dtype="int8", qlinear=_qlinear("int8", "int8"),
                 gemm_i32=_gemm_i32("int8", "int8"))

PATHS = {p.name: p for p in sorted((
    IsaPath("amx", 0, X86, ("amx-tile", "amx-int8", "avx512f", "avx512bw", "avx512vnni"), "gemm_amx", 32, 128, "uint8",
            _qlinear("int8", "uint8", ("_qlinear_serial", "_qlinear_parallel")),
            _gemm_i32("int8", "uint8", ("_gemm_i32_serial", "_gemm_i32_parallel")), ffn=_AMX_FFN,
            needs_tile_permission=True),
    IsaPath("avx512vnni", 1, X86, ("avx512f", "avx512bw", "avx512vnni"), "gemm_vnni", 4, 128, "uint8",
            _qlinear("int8", "uint8"), _gemm_i32("int8", "uint8")),
    # VEX vpdpbusd: Alder Lake and later without AVX-512 (gemm_avx2's kernels on u8 rows)
    IsaPath("avxvnni", 2, X86, ("avx2", "avxvnni"), "gemm_avxvnni", 6, 128, "uint8",
            _qlinear("int8", "uint8"), _gemm_i32("int8", "uint8")),
    IsaPath("avx2", 3, X86, ("avx2",), "gemm_avx2", 4, 0, "int16", _qlinear("int8", "int16"),
            _gemm_i32("int8", "int16")),
    # Explicit sdot (Cortex-A76, Raspberry Pi 5); "dotprod" comes from AT_HWCAP (cpu.host_features)
    IsaPath("neon_dot", 4, ARM64, ("dotprod",), "gemm_neon_dot", 4, 0, "int8", _qlinear("int8", "int8"),
            _gemm_i32("int8", "int8")),
    IsaPath("portable", 5, (), (), **_PORTABLE),
), key=lambda p: p.rank)}

# gemm.py's own kernels, the same on every path (qlinear_int16's residual and GELU, quantize_rows)
SHARED_MODULE = "gemm_portable"
SHARED = (
    Kernel("residual_all", ("x", "in_scale", "q", "rowq", "out"), (F32_2D, F32, "int8[::1]", F32_2D, F32_2D)),
    Kernel("gelu_inplace", ("y",), (F32_2D,)),
    Kernel("outlier_add", ("x", "idx", "wo", "out", "gelu"), (F32_2D, I32, F32_2D, F32_2D, BOOL)),
    Kernel("quantize_all", ("x", "dst", "rowq", "shift", "kpad", "in_scale"), (F32_2D, "int8[::1]", F32_2D, INT, INT, F32),
           at_inference=False),
)


def kernels(path: IsaPath) -> tuple[Kernel, ...]:
    """Every kernel ``path`` provides."""
    return (path.qlinear, path.gemm_i32) + ((path.ffn,) if path.ffn else ())
