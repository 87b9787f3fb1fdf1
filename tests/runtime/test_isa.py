"""The ISA dispatch table (runtime/kernels/isa.py): every record's module keeps its contract,
the chosen path follows the CPU, and the declared signatures are the ones a forward pass uses."""
import importlib
import inspect
import json
import os
import subprocess
import sys

import numba
import pytest

from edgebert.runtime.kernels import cpu, isa, precompile


def _module(name):
    return importlib.import_module(f"edgebert.runtime.kernels.{name}")  # importing compiles nothing


def _check_kernel(mod, kernel):
    entry = getattr(mod, kernel.name)
    assert callable(entry), kernel.name
    for name in kernel.compiled:
        fn = getattr(mod, name)
        assert isinstance(fn, numba.core.registry.CPUDispatcher), f"{mod.__name__}.{name} is not jitted"
        assert tuple(inspect.signature(fn.py_func).parameters) == kernel.params, f"{mod.__name__}.{name}"
    if kernel.dispatchers:  # a plain-Python entry point takes the same arguments
        assert tuple(inspect.signature(entry).parameters) == kernel.params, f"{mod.__name__}.{kernel.name}"
    for t in kernel.types:
        precompile.numba_type(t)


@pytest.mark.parametrize("path", list(isa.PATHS))
def test_every_record_module_provides_its_kernels_and_constants(path):
    record = isa.PATHS[path]
    mod = _module(record.module)
    for kernel in isa.kernels(record):
        _check_kernel(mod, kernel)
    assert callable(getattr(mod, record.pack))
    assert (mod.MR, mod.SHIFT) == (record.mr, record.shift), "the module's kernels compile in MR and SHIFT"
    xq = record.qlinear.types[record.qlinear.params.index("xq")]
    assert xq == f"{record.scratch_dtype}[::1]", "qlinear's activation rows are the scratch gemm.py sizes"
    assert record.gemm_i32.types[0] == xq


def test_shared_kernels_and_table_shape():
    mod = _module(isa.SHARED_MODULE)
    for kernel in isa.SHARED:
        _check_kernel(mod, kernel)
    ranks = [p.rank for p in isa.PATHS.values()]
    assert ranks == sorted(set(ranks)), "PATHS is best first, one rank each"
    assert list(isa.PATHS)[-1] == "portable" and not isa.PATHS["portable"].features
    assert cpu.CHOICES == ("auto", "portable", "neon_dot", "avx2", "avxvnni", "avx512vnni", "amx")
    assert isa.PATHS["neon_dot"].module == "gemm_neon_dot" and isa.PATHS["neon_dot"].machines == isa.ARM64


AMX = {"amx-tile", "amx-int8", "avx512f", "avx512bw", "avx512vnni", "avx2"}


@pytest.mark.parametrize("machine, features, permitted, detected, available", [
    ("x86_64", AMX, True, "amx", ("amx", "avx512vnni", "avx2", "portable")),
    ("x86_64", AMX, False, "avx512vnni", ("avx512vnni", "avx2", "portable")),  # Linux refused the tile data
    ("x86_64", {"avx2", "avx512f", "avx512vnni"}, True, "avx2", ("avx2", "portable")),  # no avx512bw
    ("x86_64", set(), True, "portable", ("portable",)),
    ("aarch64", {"dotprod"}, True, "neon_dot", ("neon_dot", "portable")),  # Cortex-A76, Raspberry Pi 5
    ("aarch64", {"avx2", "dotprod"}, True, "neon_dot", ("neon_dot", "portable")),
    ("aarch64", {"neon"}, True, "portable", ("portable",)),  # Cortex-A72, Raspberry Pi 4
    ("x86_64", {"avx2", "dotprod"}, True, "avx2", ("avx2", "portable")),  # ARM features count for nothing on x86
    ("arm64", set(), True, "portable", ("portable",)),
    ("aarch64", AMX, True, "portable", ("portable",)),  # x86 features on another machine count for nothing
])
def test_chosen_path_follows_machine_features_and_permission(monkeypatch, machine, features, permitted, detected,
                                                             available):
    monkeypatch.setattr(cpu.platform, "machine", lambda: machine)
    monkeypatch.setattr(cpu, "host_features", lambda: frozenset(features))
    monkeypatch.setattr(cpu, "amx_permitted", lambda: permitted)
    monkeypatch.delenv(cpu.ENV_VAR, raising=False)
    assert cpu.detected_path.__wrapped__() == detected
    assert cpu.available_paths() == available
    assert cpu.kernel_path() == available[0]
    if "neon_dot" not in available:
        with pytest.raises(ValueError, match="neon_dot"):
            cpu.kernel_path("neon_dot")


def test_jobs_cover_each_kernel_once_and_only_runnable_paths_compile(monkeypatch):
    everything = precompile.jobs(list(isa.PATHS), inference_only=False)
    keys = [(j.module, j.dispatcher, j.types) for j in everything]
    assert len(keys) == len(set(keys))
    neon = {j.dispatcher for j in everything if j.path == "neon_dot"}
    assert neon == {"qlinear_kernel", "gemm_i32_kernel"} and {j.module for j in everything if j.path == "neon_dot"} == {
        "gemm_neon_dot"}
    amx = {j.dispatcher for j in everything if j.path == "amx"}
    assert amx == {"_qlinear_serial", "_qlinear_parallel", "_gemm_i32_serial", "_gemm_i32_parallel", "ffn_kernel"}
    assert all(not j.kernel.startswith("gemm_i32") for j in precompile.jobs(list(isa.PATHS)))  # not at inference
    assert {j.path for j in precompile.jobs()} == set(cpu.available_paths()) | {None}
    monkeypatch.setattr(cpu, "host_features", lambda: frozenset())
    with pytest.raises(ValueError, match="cannot run"):
        precompile.compile_job(next(j for j in everything if j.path == "avx2"))


_DECLARED_VS_USED = """
import json, sys
from edgebert import warmup
from edgebert.runtime.kernels import precompile

warmup._run_tiny_model()
declared = {}
for job in precompile.jobs((sys.argv[1],)):
    declared.setdefault(job.function(), set()).add(job.signature())
print(json.dumps({f"{fn.__module__}.{fn.__name__}": {"declared": sorted(map(str, sigs)),
                                                     "used": sorted(map(str, fn.signatures))}
                  for fn, sigs in declared.items()}))
"""


@pytest.mark.parametrize("path", cpu.available_paths())
def test_a_forward_pass_uses_exactly_the_declared_signatures(path):
    """Warm-up's tiny model (real models' dtypes and layouts) calls every int8 kernel the table
    declares for the path, with the declared types and no others: compiling the table's jobs
    is what a forward pass would compile there."""
    env = dict(os.environ, **{cpu.ENV_VAR: path}, NUMBA_NUM_THREADS="2")  # 2 threads: the long batch fuses (amx)
    run = subprocess.run([sys.executable, "-c", _DECLARED_VS_USED, path], env=env, capture_output=True, text=True,
                         timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]
    for name, sigs in json.loads(run.stdout.strip().splitlines()[-1]).items():
        assert sigs["used"] == sigs["declared"], name


# AT_HWCAP words of real boards (bits from /proc/cpuinfo's Features line, arch/arm64 hwcap.h)
PI4_A72_HWCAP = 0x887  # fp asimd evtstrm crc32 cpuid
PI5_A76_HWCAP = 0x119FFF  # fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp


@pytest.mark.parametrize("hwcap, hwcap2, features, detected", [
    (PI5_A76_HWCAP, 0, {"neon", "dotprod"}, "neon_dot"),
    (PI4_A72_HWCAP, 0, {"neon"}, "portable"),
    (PI5_A76_HWCAP | (1 << 22), 1 << 13, {"neon", "dotprod", "sve", "i8mm"}, "neon_dot"),  # e.g. Neoverse V1
    (0, 0, set(), "portable"),
])
def test_aarch64_path_comes_from_at_hwcap(monkeypatch, hwcap, hwcap2, features, detected):
    """LLVM 22 reads a Pi 5's /proc/cpuinfo without ``dotprod`` (it ignores ``asimddp``): the
    dot-product path is found from the kernel's AT_HWCAP, here fed fake words on any host."""
    import llvmlite.binding as llb

    assert cpu.arm64_features(hwcap, hwcap2) == features
    monkeypatch.setattr(cpu.platform, "machine", lambda: "aarch64")
    monkeypatch.setattr(cpu.platform, "system", lambda: "Linux")
    monkeypatch.setattr(cpu, "auxv_hwcaps", lambda: (hwcap, hwcap2))
    monkeypatch.setattr(llb, "get_host_cpu_features", lambda: {"neon": True, "fp-armv8": True, "dotprod": False})
    monkeypatch.setattr(cpu, "amx_permitted", lambda: False)
    monkeypatch.delenv(cpu.ENV_VAR, raising=False)
    cpu.host_features.cache_clear()
    try:
        assert cpu.detected_path.__wrapped__() == detected
        assert cpu.kernel_path() == detected
    finally:
        cpu.host_features.cache_clear()


def test_hwcap_words_count_only_on_aarch64(monkeypatch):
    """On x86, AT_HWCAP holds CPUID bits: they must not be read as arm64 flags."""
    hwcap, hwcap2 = cpu.auxv_hwcaps()  # the real getauxval: Linux fills AT_HWCAP on x86 and arm64 alike
    assert isinstance(hwcap, int) and isinstance(hwcap2, int)
    if cpu.platform.system() == "Linux":
        assert hwcap != 0
    monkeypatch.setattr(cpu, "auxv_hwcaps", lambda: (PI5_A76_HWCAP, 1 << 13))
    cpu.host_features.cache_clear()
    try:
        if cpu.platform.machine().lower() not in isa.ARM64:
            assert not {"dotprod", "i8mm"} & cpu.host_features()
        else:
            assert {"dotprod", "i8mm"} <= cpu.host_features()
    finally:
        cpu.host_features.cache_clear()
