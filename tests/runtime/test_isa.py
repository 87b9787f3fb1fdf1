"""The ISA dispatch table (runtime/kernels/isa.py): every record's module keeps its contract
and the chosen path follows the CPU."""
import importlib
import inspect
import numba
import pytest

from edgebert.runtime.kernels import cpu, isa


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
