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
    assert cpu.CHOICES == ("auto", "portable", "avx2", "avxvnni", "avx512vnni", "amx")
    assert isa.PATHS["neon_dot"].module == "gemm_portable" and "neon_dot" not in cpu.CHOICES


AMX = {"amx-tile", "amx-int8", "avx512f", "avx512bw", "avx512vnni", "avx2"}


@pytest.mark.parametrize("machine, features, permitted, detected, available", [
    ("x86_64", AMX, True, "amx", ("amx", "avx512vnni", "avx2", "portable")),
    ("x86_64", AMX, False, "avx512vnni", ("avx512vnni", "avx2", "portable")),  # Linux refused the tile data
    ("x86_64", {"avx2", "avx512f", "avx512vnni"}, True, "avx2", ("avx2", "portable")),  # no avx512bw
    ("x86_64", set(), True, "portable", ("portable",)),
    ("aarch64", {"dotprod"}, True, "neon_dot", ("portable",)),  # reported, runs (and is chosen as) portable
    ("aarch64", {"avx2", "dotprod"}, True, "neon_dot", ("portable",)),
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
    with pytest.raises(ValueError, match="neon_dot"):
        cpu.kernel_path("neon_dot")


def test_jobs_cover_each_kernel_once_and_only_runnable_paths_compile(monkeypatch):
    everything = precompile.jobs(list(isa.PATHS), inference_only=False)
    keys = [(j.module, j.dispatcher, j.types) for j in everything]
    assert len(keys) == len(set(keys))
    assert len(precompile.jobs(("neon_dot", "portable"))) == len(precompile.jobs(("portable",)))
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
