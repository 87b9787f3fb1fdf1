"""The fused feed-forward block (gemm.ffn) against its unfused steps, and the executor's fusion pass."""
import numba
import numpy as np
import pytest

import edgebert
from edgebert.runtime.kernels import cpu, gemm
from edgebert.runtime.kernels.norm import add_norm

FUSED_PATHS = [p for p in cpu.available_paths() if p == "amx"]  # paths with an ffn_kernel

pytestmark = pytest.mark.skipif(not FUSED_PATHS, reason="no fused feed-forward kernel for this CPU's paths")


def _layers(rng, H, N1, smooth):
    def packed(n, k, input_scale=None):
        return gemm.pack_linear(rng.integers(-127, 128, (n, k), dtype=np.int8), rng.uniform(1e-3, 2e-2, n).astype(np.float32),
                                rng.normal(0, 1, n).astype(np.float32), input_scale=input_scale, path="amx")
    up = packed(N1, H, rng.uniform(0.5, 2, H).astype(np.float32) if smooth else None)
    down = packed(H, N1)
    g, b = rng.normal(1, 0.1, H).astype(np.float32), rng.normal(0, 0.1, H).astype(np.float32)
    return up, down, g, b


def _unfused(x, up, down, r, g, b, two_pass=False, down_residual=None):
    out = np.empty((x.shape[0], down.N), np.float32)
    h = gemm.qlinear(x, up, activation="gelu")
    d = gemm.qlinear_int16(h, down, down_residual) if two_pass else gemm.qlinear(h, down)
    add_norm(d, r, g, b, 1e-12, out)
    return out


@pytest.mark.parametrize("H,N1", [(64, 128), (40, 72), (384, 1536)])
@pytest.mark.parametrize("M", [1, 15, 31, 33, 64, 97, 130])
@pytest.mark.parametrize("panel", [32, 64])
def test_fused_block_is_bit_identical_to_its_steps(H, N1, M, panel):
    rng = np.random.default_rng(M * 7 + H)
    up, down, g, b = _layers(rng, H, N1, smooth=M % 2 == 1)
    x, r = rng.normal(0, 2, (M, H)).astype(np.float32), rng.normal(0, 2, (M, H)).astype(np.float32)
    out = gemm.ffn(x, up, down, r, g, b, 1e-12, np.empty((M, H), np.float32), panel)
    np.testing.assert_array_equal(out, _unfused(x, up, down, r, g, b))


@pytest.mark.parametrize("M", [1, 31, 64, 97])
def test_fused_two_pass_block_is_bit_identical_to_qlinear_int16(M):
    """down as int16 activations (two int8 passes), as the converter keeps its most sensitive layer."""
    rng = np.random.default_rng(M)
    H, N1 = 96, 200
    up = gemm.pack_linear(rng.integers(-127, 128, (N1, H), dtype=np.int8), rng.uniform(1e-3, 2e-2, N1).astype(np.float32),
                          rng.normal(0, 1, N1).astype(np.float32), path="amx")
    qw, scale = rng.integers(-127, 128, (H, N1), dtype=np.int8), rng.uniform(1e-3, 2e-2, H).astype(np.float32)
    down = gemm.pack_linear(qw, scale, rng.normal(0, 1, H).astype(np.float32),
                            input_scale=rng.uniform(0.5, 2, N1).astype(np.float32), path="amx")
    down_residual = gemm.pack_linear(qw, scale, path="amx")
    g, b = rng.normal(1, 0.1, H).astype(np.float32), rng.normal(0, 0.1, H).astype(np.float32)
    x, r = rng.normal(0, 2, (M, H)).astype(np.float32), rng.normal(0, 2, (M, H)).astype(np.float32)
    want = _unfused(x, up, down, r, g, b, two_pass=True, down_residual=down_residual)
    for panel in (32, 64):
        got = gemm.ffn(x, up, down, r, g, b, 1e-12, np.empty((M, H), np.float32), panel, two_pass=True)
        np.testing.assert_array_equal(got, want)
    assert not np.array_equal(want, _unfused(x, up, down, r, g, b)), "the second pass must change something"


def test_fused_block_thread_count_and_rows_independent():
    rng = np.random.default_rng(3)
    up, down, g, b = _layers(rng, 96, 200, smooth=True)
    x, r = rng.normal(0, 2, (150, 96)).astype(np.float32), rng.normal(0, 2, (150, 96)).astype(np.float32)
    before = numba.get_num_threads()
    try:
        results = []
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            results.append(gemm.ffn(x, up, down, r, g, b, 1e-12, np.empty_like(x), 64))
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(results[0], results[1])
    alone = gemm.ffn(x[70:71].copy(), up, down, r[70:71].copy(), g, b, 1e-12, np.empty((1, 96), np.float32), 32)
    np.testing.assert_array_equal(alone[0], results[0][70])


def test_fused_block_rejects_bad_input():
    rng = np.random.default_rng(5)
    up, down, g, b = _layers(rng, 64, 128, smooth=False)
    x = rng.normal(0, 1, (40, 64)).astype(np.float32)
    x[7, 3] = np.nan
    with pytest.raises(edgebert.InputError, match="NaN or Inf in 1 of its 40 rows"):
        gemm.ffn(x, up, down, x.copy(), g, b, 1e-12, np.empty_like(x), 32)
    with pytest.raises(edgebert.InputError, match="residual must have 40 rows"):
        gemm.ffn(x, up, down, x[:3].copy(), g, b, 1e-12, np.empty_like(x), 32)
    with pytest.raises(edgebert.InputError, match="out must not overlap x"):
        gemm.ffn(x, up, down, x.copy(), g, b, 1e-12, x, 32)
    with pytest.raises(edgebert.InputError, match="panel must be a positive multiple of 32"):
        gemm.ffn(x, up, down, x.copy(), g, b, 1e-12, np.empty_like(x), 40)
    with pytest.raises(edgebert.InputError, match="gamma must have shape"):
        gemm.ffn(x, up, down, x.copy(), g[:5].copy(), b, 1e-12, np.empty_like(x), 32)
    with pytest.raises(edgebert.InputError, match="up has 128 outputs but down takes 64"):
        gemm.ffn(x, up, up, x.copy(), g, b, 1e-12, np.empty_like(x), 32)


def test_panel_rows_give_every_thread_a_panel():
    rng = np.random.default_rng(6)
    up, down, _, _ = _layers(rng, 64, 128, smooth=False)
    assert gemm.panel_rows((up, down), 128, 2) == 64
    assert gemm.panel_rows((up, down), 64, 2) == 32
    assert gemm.panel_rows((up,), 16, 1) == 64
    assert gemm.panel_rows((up, down), 32, 2) == 0  # one panel: the column-split kernels instead
    other = gemm.pack_linear(np.ones((64, 128), np.int8), np.ones(64, np.float32), path="portable")
    assert gemm.panel_rows((up, other), 128, 1) == 0
    assert gemm.panel_rows((other,), 128, 1) == 0


@pytest.mark.parametrize("lengths", [[3], [40, 7, 90], [128, 128]])
def test_executor_fused_and_unfused_agree(tiny_int8, lengths):
    """The fused step list gives the same bits as the node-by-node one, and asking
    for a value that lives inside a fused block runs the unfused list."""
    model = edgebert.load(tiny_int8)
    ex = model.executor
    assert len(ex.fused_away) == 4, "both feed-forward blocks fuse, the one with an int16 down layer too"
    rng = np.random.default_rng(len(lengths))
    width = max(lengths)
    ids = rng.integers(1000, 20000, (len(lengths), width))
    mask = (np.arange(width)[None, :] < np.array(lengths)[:, None]).astype(np.int64)
    fused = model.run(ids, mask).copy()
    steps, io = ex.fused_steps, ex.fused_io
    ex.fused_steps, ex.fused_io = ex.steps, ex.io  # force the unfused list
    ex._plans.clear()
    try:
        plain = model.run(ids, mask).copy()
    finally:
        ex.fused_steps, ex.fused_io = steps, io
        ex._plans.clear()
    np.testing.assert_array_equal(fused, plain)
    inner = sorted(ex.fused_away)[0]
    ids32, types, positions, offsets = edgebert.runtime.executor.pack_sequences(
        [(ids[b, :n], np.zeros(n, np.int32)) for b, n in enumerate(lengths)])
    got = {k: v.copy() for k, v in ex.run(ids32, types, positions, offsets, outputs=[inner, ex.outputs[0]]).items()}
    assert got[inner].shape[0] == sum(lengths)
    fused_out = ex.run(ids32, types, positions, offsets, outputs=[ex.outputs[0]])[ex.outputs[0]]
    np.testing.assert_array_equal(got[ex.outputs[0]], fused_out)
