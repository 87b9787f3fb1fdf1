"""Which int8 kernel path this CPU can run, detected once.

An explicit intrinsic compiled for a CPU that lacks it aborts the whole
process, so the path is chosen here before any kernel is compiled: on x86
from LLVM's view of the host; on aarch64 also from the CPU flags the Linux
kernel passes the process (AT_HWCAP, AT_HWCAP2), because LLVM 22's reading of
/proc/cpuinfo does not turn ``asimddp`` into ``dotprod`` (a Raspberry Pi 5
would otherwise run the portable path). ``EDGEBERT_KERNEL`` =
auto|portable|neon_dot|avx2|avxvnni|avx512vnni|amx forces a path; forcing one
the CPU lacks is refused.

AMX also needs the kernel's permission (Linux arch_prctl XTILEDATA; without
it the first tile instruction raises SIGILL). It is requested once, when the
path is detected; it is process-wide, so Numba threads started before or
after it may use AMX.
"""

import functools
import os
import platform

from .isa import ARM64, PATHS

ENV_VAR = "EDGEBERT_KERNEL"
# The paths and what each needs are declared once, in isa.PATHS (best first).
CHOICES = ("auto",) + tuple(name for name, p in reversed(PATHS.items()) if p.by_name)


# Linux arm64 CPU flags (arch/arm64/include/uapi/asm/hwcap.h): LLVM feature name ->
# (auxiliary vector entry, bit). getauxval(AT_HWCAP) = 16, getauxval(AT_HWCAP2) = 26.
AT_HWCAP, AT_HWCAP2 = 16, 26
ARM64_HWCAPS = {
    "neon": (AT_HWCAP, 1 << 1),  # HWCAP_ASIMD
    "dotprod": (AT_HWCAP, 1 << 20),  # HWCAP_ASIMDDP: sdot/udot (Cortex-A76/A55 and later; not the A72)
    "sve": (AT_HWCAP, 1 << 22),  # HWCAP_SVE
    "i8mm": (AT_HWCAP2, 1 << 13),  # HWCAP2_I8MM: smmla/usdot (not on the Pi 5's A76)
}


def arm64_features(hwcap, hwcap2):
    """The LLVM feature names that arm64 AT_HWCAP / AT_HWCAP2 words announce."""
    words = {AT_HWCAP: hwcap, AT_HWCAP2: hwcap2}
    return frozenset(name for name, (entry, bit) in ARM64_HWCAPS.items() if words[entry] & bit)


def auxv_hwcaps():
    """(AT_HWCAP, AT_HWCAP2) of this process from glibc's getauxval; (0, 0) where there is none."""
    import ctypes

    try:
        getauxval = ctypes.CDLL(None).getauxval
    except (OSError, AttributeError):
        return 0, 0
    getauxval.restype, getauxval.argtypes = ctypes.c_ulong, [ctypes.c_ulong]
    return getauxval(AT_HWCAP), getauxval(AT_HWCAP2)


@functools.lru_cache(maxsize=1)
def host_features():
    """Frozenset of the CPU features this host runs: LLVM's view, plus AT_HWCAP's on aarch64."""
    import llvmlite.binding as llb

    llvm = frozenset(k for k, on in llb.get_host_cpu_features().items() if on)
    if platform.system() == "Linux" and platform.machine().lower() in ARM64:
        return llvm | arm64_features(*auxv_hwcaps())
    return llvm


@functools.lru_cache(maxsize=1)
def amx_permitted():
    """Ask Linux for AMX tile data (ARCH_REQ_XCOMP_PERM); True if granted."""
    if platform.system() != "Linux" or platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    import ctypes

    sys_arch_prctl, req_perm, get_perm, xtiledata = 158, 0x1023, 0x1022, 18
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        if libc.syscall(ctypes.c_long(sys_arch_prctl), ctypes.c_long(req_perm), ctypes.c_ulong(xtiledata)) != 0:
            return False
        bits = ctypes.c_ulong(0)
        if libc.syscall(ctypes.c_long(sys_arch_prctl), ctypes.c_long(get_perm), ctypes.byref(bits)) != 0:
            return False
        return bool(bits.value & (1 << xtiledata))
    except (OSError, AttributeError):
        return False


@functools.lru_cache(maxsize=1)
def detected_path():
    """Best path the hardware supports: amx, avx512vnni, avxvnni, avx2, neon_dot or portable."""
    return _runnable()[0]


def _runnable():
    """The paths whose instructions this CPU has (and, for AMX, may use), best first."""
    machine = platform.machine().lower()
    return tuple(name for name, p in PATHS.items()
                 if (not p.machines or machine in p.machines) and _has(p.features)
                 and (not p.needs_tile_permission or amx_permitted()))


def _has(features):
    return not features or all(f in host_features() for f in features)


def available_paths():
    """Kernel paths (names usable with ``EDGEBERT_KERNEL``) this CPU can run, best first."""
    return tuple(name for name in _runnable() if PATHS[name].by_name)


def kernel_path(requested=None):
    """Path to use: ``requested``, else ``$EDGEBERT_KERNEL``, else the best one."""
    req = (requested if requested is not None else os.environ.get(ENV_VAR, "auto")).strip().lower()
    if req not in CHOICES:
        raise ValueError(f"{ENV_VAR}={req!r} is not one of {', '.join(CHOICES)}")
    if req == "auto":
        return available_paths()[0]
    if req not in available_paths():
        raise ValueError(
            f"kernel path {req!r} was requested ({ENV_VAR}) but this CPU "
            f"({detected_path()}) cannot run it; it can run {', '.join(available_paths())}"
        )
    return req
