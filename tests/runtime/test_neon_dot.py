"""The aarch64 dot-product path (gemm_neon_dot), checked on any host: its register tile,
cross-compiled for aarch64 from Numba's LLVM IR, is made of ``sdot`` and keeps the tile in
registers. Running it against the NumPy references happens under QEMU (tests/test_aarch64.py)
and on an aarch64 machine, where tests/runtime/test_gemm.py runs every available path."""
import json
import subprocess
import sys

import numpy as np
import pytest

from edgebert.runtime.kernels import gemm_neon_dot

_CROSS = """
import json
from edgebert.runtime.kernels import crosscompile as cc
out = {}
for cpu, features in (("generic", "+neon"), ("cortex-a76", "")):
    asm = cc.tile_assembly(cpu, features)
    loop = cc.inner_loop(asm)
    out[cpu] = {"sdot": cc.count(asm, "sdot"), "loop": loop}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def cross():
    """The tile compiled for aarch64 'generic' (no dotprod in the target machine: the tile's own
    target-features attribute must bring it) and for the Raspberry Pi 5's Cortex-A76.
    In a subprocess: an intrinsic the target cannot select aborts the process."""
    run = subprocess.run([sys.executable, "-c", _CROSS], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("cpu", ["generic", "cortex-a76"])
def test_tile_compiles_to_sdot_with_the_tile_in_registers(cross, cpu):
    loop = cross[cpu]["loop"]
    mnemonics = [ln.split()[0] for ln in loop]
    # per group of 4 k: 4 weight vectors, 4 broadcast activations, 16 sdot (4 rows x 16 columns)
    assert mnemonics.count("sdot") == 16, loop
    assert cross[cpu]["sdot"] == 16
    assert sum(m.startswith("ld1r") for m in mnemonics) == 4, loop
    assert sum(m == "ldr" and ln.split()[1].startswith("q") for m, ln in zip(mnemonics, loop)) == 4, loop
    assert not [ln for ln in loop if "sp" in ln.replace(",", " ").split()[1:] or "[sp" in ln], "spills in the loop"
    assert len(loop) <= 34, loop  # 24 loads and sdot, address and loop arithmetic: nothing else


def _sdot_model(xq, wp, M, N, Kp):
    """What the tile computes, read from the packed layout the NumPy way: per 4-column block
    and 4-k group, lane j accumulates sum_i x[k+i] * w[block][k/4][j][i] (one ``sdot``)."""
    w = wp.reshape(-1, Kp // 4, 4, 4).astype(np.int32)  # [Np/4][Kp/4][4 cols][4 k]
    x = xq.reshape(M, Kp // 4, 4).astype(np.int32)
    return np.einsum("mgi,bgji->mbj", x, w).reshape(M, -1)[:, :N]


@pytest.mark.parametrize("M, K, N", [(1, 7, 5), (3, 33, 17), (5, 385, 130)])
def test_packing_feeds_sdot_lanes_the_right_bytes(M, K, N):
    """The [Np/4][Kp/4][4][4] layout the tile reads gives the exact int32 GEMM (K, N padded with zeros)."""
    rng = np.random.default_rng(K)
    qw = rng.integers(-127, 128, (N, K), dtype=np.int8)
    q = rng.integers(-127, 128, (M, K), dtype=np.int8)
    wp, corr, Kp = gemm_neon_dot.pack(qw)
    assert Kp % gemm_neon_dot.KG == 0 and not corr.any() and wp.size == Kp * -(-N // gemm_neon_dot.NR) * 16
    xq = np.zeros((M, Kp), np.int8)
    xq[:, :K] = q
    assert np.array_equal(_sdot_model(xq, wp, M, N, Kp), q.astype(np.int32) @ qw.astype(np.int32).T)
