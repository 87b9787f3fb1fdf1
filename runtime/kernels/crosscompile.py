"""Compile a kernel's LLVM IR for another CPU (aarch64 from x86) and read its assembly.

    python -m edgebert.runtime.kernels.crosscompile [--cpu cortex-a76] [--features +neon]

prints the aarch64 assembly of gemm_neon_dot's register tile. Numba lowers the
tile to LLVM IR without making machine code for this host (``no_compile``: an
aarch64 intrinsic would abort LLVM's x86 backend), then llvmlite optimizes and
compiles that IR for an aarch64 target machine. Run it in a subprocess: a
kernel that needs a feature the target lacks aborts the process.
"""
from __future__ import annotations

import argparse
import re

TRIPLE = "aarch64-unknown-linux-gnu"
# gemm_neon_dot._tile(xq, Kp, m0, wp, nt, out, M, N, corr), as qlinear_kernel calls it
TILE_TYPES = ("int8[::1]", "int64", "int64", "int8[::1]", "int64", "float32[::1]", "int64", "int64", "int32[::1]")


def kernel_ir(dispatcher, types) -> str:
    """The LLVM IR Numba lowers ``dispatcher`` to for argument ``types`` (isa.py spellings); no machine code."""
    from numba.core import compiler, registry

    from .precompile import numba_type

    flags = compiler.Flags()
    flags.no_compile = flags.no_cpython_wrapper = flags.no_cfunc_wrapper = True
    flags.error_model = "numpy"
    target = registry.cpu_target
    cres = compiler.compile_extra(target.typing_context, target.target_context, dispatcher.py_func,
                                  tuple(numba_type(t) for t in types), None, flags, {})
    return cres.library.get_llvm_str()


def assembly(ir_text: str, cpu: str = "generic", features: str = "+neon", triple: str = TRIPLE) -> str:
    """``ir_text`` optimized at O3 and compiled for ``triple``/``cpu``/``features``: the assembly text."""
    import llvmlite.binding as llb

    llb.initialize_all_targets()
    llb.initialize_all_asmprinters()
    mod = llb.parse_assembly(ir_text)
    tm = llb.Target.from_triple(triple).create_target_machine(cpu=cpu, features=features, opt=3)
    mod.triple, mod.data_layout = triple, str(tm.target_data)
    pb = llb.create_pass_builder(tm, llb.create_pipeline_tuning_options(speed_level=3))
    pb.getModulePassManager().run(mod, pb)
    return tm.emit_assembly(mod)


def count(asm: str, mnemonic: str) -> int:
    """How many instructions ``mnemonic`` the assembly holds."""
    return len(re.findall(rf"^\s*{re.escape(mnemonic)}\s", asm, re.M))


def inner_loop(asm: str, mnemonic: str = "sdot") -> list[str]:
    """The instructions of the loop that holds the first ``mnemonic``: from its label to the branch back."""
    lines = [ln.strip() for ln in asm.splitlines()]
    first = next(i for i, ln in enumerate(lines) if ln.split("\t")[0] == mnemonic)
    start = max(i for i in range(first) if re.fullmatch(r"\.LBB\w+:", lines[i]))
    label = lines[start][:-1]
    end = next(i for i in range(first, len(lines)) if lines[i].startswith("b") and lines[i].endswith(label))
    return [ln for ln in lines[start + 1:end + 1] if ln and not ln.startswith((".", "//"))]


def tile_assembly(cpu: str = "generic", features: str = "+neon") -> str:
    """gemm_neon_dot's register tile, compiled for an aarch64 ``cpu``."""
    from . import gemm_neon_dot

    return assembly(kernel_ir(gemm_neon_dot._tile, TILE_TYPES), cpu, features)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu", default="generic", help="LLVM CPU name (cortex-a72, cortex-a76, generic)")
    ap.add_argument("--features", default="+neon", help="LLVM target features of the target machine")
    ap.add_argument("--loop", action="store_true", help="print only the inner loop (the one with sdot)")
    args = ap.parse_args(argv)
    asm = tile_assembly(args.cpu, args.features)
    print("\n".join(inner_loop(asm)) if args.loop else asm)


if __name__ == "__main__":
    main()
