"""Every int8 linear path this CPU runs, against the NumPy references."""

import platform

import numba
import numpy as np
import pytest

from edgebert.runtime.kernels import cpu, gemm, gemm_portable
from edgebert.runtime.kernels.gemm_ref import (
    gelu_ref,
    gemm_i32_ref,
    qlinear_ref,
    quantize_rows_ref,
)

PATHS = cpu.available_paths()

# The integer part (q, acc) is compared exactly. The dequant is the same
# float32 multiply-add, in the same order, as the reference, so on x86 it is
# bitwise equal; a backend may still contract it into an FMA (aarch64),
# which differs by one rounding of the product: 2 float32 ulps of
# |acc * s| + |bias| covers that and nothing else.
DEQUANT_RTOL = 2 * float(np.finfo(np.float32).eps)

SHAPES = [  # (M, K, N): odd sizes hit every padded/ragged edge
    (1, 7, 5),
    (3, 33, 17),
    (4, 64, 64),
    (5, 1, 1),
    (2, 385, 130),
    (17, 64, 33),  # amx: one 32-row block, 17 live rows
    (48, 129, 64),  # amx: a full block, then a 16-row half block
    (513, 385, 1153),
]


def _weights(rng, N, K):
    qw = rng.integers(-127, 128, size=(N, K), dtype=np.int8)
    scale = rng.uniform(1e-3, 2e-2, N).astype(np.float32)
    bias = rng.normal(0, 1, N).astype(np.float32)
    return qw, scale, bias


def _assert_close(y, x, qw, scale, bias, activation):
    """y vs the reference: exact integer part, named float tolerances."""
    ref = qlinear_ref(x, qw, scale, bias, activation)
    q, sa, c = quantize_rows_ref(x)
    lin = gemm_i32_ref(q, qw).astype(np.float32) * (sa[:, None] * scale[None, :])
    centre = np.abs(c[:, None] * gemm.row_sums(qw, scale)[None, :])  # the c * wsum term
    if activation == "gelu":
        y_lin = qlinear_ref(x, qw, scale, bias, "none").astype(np.float64)
        tol = gemm_portable.GELU_MAX_ERR * np.maximum(1.0, np.abs(y_lin))
        tol += DEQUANT_RTOL * (np.abs(lin) + centre + np.abs(bias))  # GELU slope <= 1.13
    else:
        tol = DEQUANT_RTOL * (np.abs(lin) + centre + np.abs(bias))
    err = np.abs(y.astype(np.float64) - ref)
    worst = np.unravel_index(np.argmax(err - tol), err.shape)
    assert np.all(err <= tol), f"worst at {worst}: got {y[worst]}, want {ref[worst]}"


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("activation", ["none", "gelu"])
def test_matches_reference(path, shape, activation):
    M, K, N = shape
    rng = np.random.default_rng(M * 1000 + K + N)
    qw, scale, bias = _weights(rng, N, K)
    x = rng.normal(0, 3, (M, K)).astype(np.float32)
    packed = gemm.pack_linear(qw, scale, bias, path=path)
    y = gemm.qlinear(x, packed, activation=activation)
    _assert_close(y, x, qw, scale, bias, activation)


@pytest.mark.parametrize("path", PATHS)
def test_integer_gemm_exact(path):
    """Pure int32 GEMM, extreme weights included: no saturation anywhere."""
    rng = np.random.default_rng(1)
    M, K, N = 7, 1541, 67
    qw = rng.choice(np.array([-127, 127], np.int8), size=(N, K))
    qw[0] = 127
    qw[1] = -127
    q = rng.choice(np.array([-127, 127, 0, 1], np.int8), size=(M, K))
    q[0] = 127
    q[1] = -127
    packed = gemm.pack_linear(qw, np.ones(N, np.float32), path=path)
    out = np.empty((M, N), np.int32)
    gemm._gemm_i32(gemm._prepare_rows(q, packed), packed, out)
    np.testing.assert_array_equal(out, gemm_i32_ref(q, qw))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("activation", ["none", "gelu"])
def test_extreme_values(path, activation):
    rng = np.random.default_rng(2)
    M, K, N = 9, 97, 33
    qw = np.where(rng.random((N, K)) < 0.5, -127, 127).astype(np.int8)
    scale = np.full(N, 0.05, np.float32)
    bias = rng.normal(0, 1, N).astype(np.float32)
    x = rng.normal(0, 1, (M, K)).astype(np.float32)
    x[0] = 0.0  # zero row -> bias only
    x[1, 5] = 1e30  # one huge outlier: everything else rounds to 0
    x[2] *= 1e-30  # tiny but normal amax
    x[3] = 1e-39  # subnormal amax: treated as a zero row
    x[4] = 127.0  # all at amax
    x[5] = -3e30  # huge, yet the output stays finite
    x[6, :] = np.float32(1.0)
    x[6, ::2] = np.float32(-0.5)
    packed = gemm.pack_linear(qw, scale, bias, path=path)
    y = gemm.qlinear(x, packed, activation=activation)
    _assert_close(y, x, qw, scale, bias, activation)
    if activation == "none":
        np.testing.assert_array_equal(y[0], bias)
        np.testing.assert_array_equal(y[3], bias)


def test_quantize_rows_exact():
    rng = np.random.default_rng(3)
    x = rng.normal(0, 2, (37, 129)).astype(np.float32)
    x[0] = 0
    x[1, :6] = [127.0, 0.5, 1.5, 2.5, -0.5, -127.0]  # centre 0, step 1: ties round half to even
    x[1, 6:] = 0
    x[2] = 1e-39
    x[3] = rng.uniform(5, 6, 129)  # all positive: the whole [min, max] range gets the 255 levels
    q, sa, c = gemm.quantize_rows(x)
    q_ref, sa_ref, c_ref = quantize_rows_ref(x)
    np.testing.assert_array_equal(q, q_ref)
    np.testing.assert_array_equal(sa, sa_ref)
    np.testing.assert_array_equal(c, c_ref)
    np.testing.assert_array_equal(q[1, :6], [127, 0, 2, 2, 0, -127])
    assert q[3].min() == -127 and q[3].max() == 127
    assert np.abs(q[3] * sa[3] + c[3] - x[3]).max() <= sa[3] / 2 * (1 + 1e-5)


@pytest.mark.parametrize("K", [384, 1536, 1001])
def test_quantize_rows_exact_wide(K):
    """The vectorised quantizer on model widths: ties, a narrow range far from 0
    (the clip), +-0, denormals, huge values and an input scale, all bit for bit."""
    rng = np.random.default_rng(K)
    x = rng.normal(0, 3, (12, K)).astype(np.float32)
    x[0, :] = np.float32(0.0)
    x[0, ::3] = np.float32(-0.0)
    x[1, :] = np.arange(K) % 255 - 127 + 0.5 * (np.arange(K) % 2)  # every .5 tie, centre 0, step 1
    x[1, :2] = [-127.0, 127.0]
    x[2] = np.float32(1e6) + rng.uniform(0, 0.2, K).astype(np.float32)  # r ~ ulp(c): clip active
    x[3] = rng.uniform(-1e-38, 1e-38, K).astype(np.float32)  # denormals
    x[4] = rng.uniform(-8e37, 8e37, K).astype(np.float32)  # x 4 (scale): max - min overflows, sa = inf
    x[5, ::7] = np.float32(-1e-45)
    s = rng.uniform(0.25, 4, K).astype(np.float32)
    for scale in (None, s):
        q, sa, c = gemm.quantize_rows(x, scale)
        with np.errstate(over="ignore"):  # row 4: the reference's max - min overflows too
            q_ref, sa_ref, c_ref = quantize_rows_ref(x, scale)
        np.testing.assert_array_equal(q, q_ref)
        np.testing.assert_array_equal(sa, sa_ref)
        np.testing.assert_array_equal(c, c_ref)
    x[6, K // 2] = np.nan
    with pytest.raises(Exception, match="NaN or Inf"):
        gemm.quantize_rows(x)


def test_input_scale_is_applied_before_quantizing():
    """SmoothQuant: qlinear(x, input_scale=s) == qlinear(x * s) on every path, bit for bit."""
    rng = np.random.default_rng(5)
    M, K, N = 5, 70, 19
    qw, scale, bias = _weights(rng, N, K)
    x = rng.normal(0, 2, (M, K)).astype(np.float32)
    s = rng.uniform(0.1, 4, K).astype(np.float32)
    for path in PATHS:
        a = gemm.qlinear(x, gemm.pack_linear(qw, scale, bias, input_scale=s, path=path))
        b = gemm.qlinear(x * s, gemm.pack_linear(qw, scale, bias, path=path))
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, qlinear_ref(x, qw, scale, bias, input_scale=s))


def test_gelu_error_bound():
    """The fast GELU is within GELU_MAX_ERR * max(1, |y|) of the erf form."""
    y = np.concatenate([np.linspace(-12, 12, 200_001), [-1e30, -1e4, 0.0, 1e4, 1e30]]).astype(np.float32)
    out = y[None, :].copy()
    ones = np.ones(y.size, np.float32)
    rowq = np.array([[1.0], [0.0]], np.float32)  # sa = 1, centre 0
    zeros = np.zeros(y.size, np.float32)
    gemm_portable.finish_row(out, 0, 0, y.size, rowq, ones, zeros, zeros, True)
    exact = gelu_ref(y)
    err = np.abs(out[0] - exact) / np.maximum(1.0, np.abs(y.astype(np.float64)))
    assert err.max() <= gemm_portable.GELU_MAX_ERR


@pytest.mark.parametrize("path", PATHS)
def test_thread_count_and_row_independence(path, monkeypatch):
    rng = np.random.default_rng(4)
    M, K, N = 37, 385, 1153
    qw, scale, bias = _weights(rng, N, K)
    x = rng.normal(0, 1, (M, K)).astype(np.float32)
    packed = gemm.pack_linear(qw, scale, bias, path=path)
    if path == "amx":  # small calls run serially: check that, then force parallel
        y_serial = gemm.qlinear(x, packed, activation="gelu")
        monkeypatch.setattr(packed.kernels, "SERIAL_OPS", 0)
        np.testing.assert_array_equal(gemm.qlinear(x, packed, activation="gelu"), y_serial)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        y1 = gemm.qlinear(x, packed, activation="gelu")
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        y2 = gemm.qlinear(x, packed, activation="gelu")
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(y1, y2)
    for m in (0, 5, M - 1):
        alone = gemm.qlinear(np.ascontiguousarray(x[m : m + 1]), packed, activation="gelu")
        np.testing.assert_array_equal(alone[0], y2[m])


def test_out_reused_and_m_zero():
    rng = np.random.default_rng(5)
    qw, scale, bias = _weights(rng, 9, 11)
    packed = gemm.pack_linear(qw, scale, bias)
    x = rng.normal(0, 1, (3, 11)).astype(np.float32)
    out = np.full((3, 9), np.nan, np.float32)
    assert gemm.qlinear(x, packed, out=out) is out
    np.testing.assert_array_equal(out, gemm.qlinear(x, packed))
    assert gemm.qlinear(np.zeros((0, 11), np.float32), packed).shape == (0, 9)


def test_pack_validation():
    qw = np.zeros((4, 8), np.int8)
    s = np.ones(4, np.float32)
    with pytest.raises(ValueError, match="int8"):
        gemm.pack_linear(qw.astype(np.int16), s)
    with pytest.raises(ValueError, match="2-D"):
        gemm.pack_linear(qw[0], s)
    with pytest.raises(ValueError, match="contiguous"):
        gemm.pack_linear(np.zeros((8, 4), np.int8).T, s)
    with pytest.raises(ValueError, match="-128"):
        gemm.pack_linear(np.full((4, 8), -128, np.int8), s)
    with pytest.raises(ValueError, match="float32"):
        gemm.pack_linear(qw, s.astype(np.float64))
    with pytest.raises(ValueError, match=r"\(4,\)"):
        gemm.pack_linear(qw, np.ones(5, np.float32))
    with pytest.raises(ValueError, match="bias"):
        gemm.pack_linear(qw, s, bias=np.ones(3, np.float32))
    with pytest.raises(ValueError, match="NaN"):
        gemm.pack_linear(qw, np.full(4, np.nan, np.float32))


def test_qlinear_validation():
    packed = gemm.pack_linear(np.ones((4, 8), np.int8), np.ones(4, np.float32))
    x = np.ones((2, 8), np.float32)
    with pytest.raises(ValueError, match="float32"):
        gemm.qlinear(x.astype(np.float64), packed)
    with pytest.raises(ValueError, match=r"\(M, 8\)"):
        gemm.qlinear(np.ones((2, 7), np.float32), packed)
    with pytest.raises(ValueError, match="contiguous"):
        gemm.qlinear(np.ones((8, 2), np.float32).T, packed)
    with pytest.raises(ValueError, match="shape"):
        gemm.qlinear(x, packed, out=np.empty((2, 5), np.float32))
    with pytest.raises(ValueError, match="float32"):
        gemm.qlinear(x, packed, out=np.empty((2, 4), np.float64))
    with pytest.raises(ValueError, match="contiguous"):
        gemm.qlinear(x, packed, out=np.empty((4, 2), np.float32).T)
    with pytest.raises(ValueError, match="activation"):
        gemm.qlinear(x, packed, activation="relu")
    with pytest.raises(ValueError, match="pack_linear"):
        gemm.qlinear(x, "weights")
    bad = x.copy()
    bad[1, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        gemm.qlinear(bad, packed)


def test_kernel_path_selection(monkeypatch):
    monkeypatch.delenv(cpu.ENV_VAR, raising=False)
    assert cpu.kernel_path() == PATHS[0]
    assert cpu.kernel_path("portable") == "portable"
    monkeypatch.setenv(cpu.ENV_VAR, "portable")
    assert gemm.pack_linear(np.ones((2, 3), np.int8), np.ones(2, np.float32)).path == "portable"
    monkeypatch.setenv(cpu.ENV_VAR, "sse9")
    with pytest.raises(ValueError, match="sse9"):
        cpu.kernel_path()
    monkeypatch.setattr(cpu, "host_features", lambda: frozenset())  # a CPU with none of the x86 extensions
    for path in ("avx512vnni", "amx", "avxvnni", "avx2"):
        with pytest.raises(ValueError, match="cannot run"):
            cpu.kernel_path(path)
    assert cpu.available_paths() == ("portable",)


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86 feature sets")
@pytest.mark.parametrize("features, paths", [
    ({"avx2", "avxvnni"}, ("avxvnni", "avx2", "portable")),  # Alder Lake: VEX VNNI, no AVX-512
    ({"avx2", "avx512f", "avx512bw", "avx512vnni"}, ("avx512vnni", "avx2", "portable")),  # Ice Lake, Zen 4
    ({"avx2"}, ("avx2", "portable")),
])
def test_paths_follow_the_cpu_features(monkeypatch, features, paths):
    """Each path is offered only where the CPU has every instruction it compiles."""
    monkeypatch.setattr(cpu, "host_features", lambda: frozenset(features))
    assert cpu.available_paths() == paths
    assert cpu.detected_path.__wrapped__() == paths[0]


def test_amx_needs_permission(monkeypatch):
    """Without the kernel's XTILEDATA permission the best path is not amx."""
    monkeypatch.setattr(cpu, "amx_permitted", lambda: False)
    assert cpu.detected_path.__wrapped__() != "amx"


_AMX_THREADS_SCRIPT = """
import numba, numpy as np
from numba import njit, prange

@njit(parallel=True)
def warm(a):
    s = 0.0
    for i in prange(a.size):
        s += a[i]
    return s

warm(np.ones(64))  # Numba's worker threads exist before the AMX request
from edgebert.runtime.kernels import cpu, gemm
from edgebert.runtime.kernels.gemm_ref import qlinear_ref
assert cpu.amx_permitted() and cpu.kernel_path("amx") == "amx"
from edgebert.runtime.kernels import gemm_amx
gemm_amx.SERIAL_OPS = 0  # always the parallel kernel
numba.set_num_threads(2)
rng = np.random.default_rng(6)
qw = rng.integers(-127, 128, size=(200, 97), dtype=np.int8)
scale, bias = np.full(200, 0.01, np.float32), np.zeros(200, np.float32)
x = rng.normal(0, 1, (600, 97)).astype(np.float32)
y = gemm.qlinear(x, gemm.pack_linear(qw, scale, bias, path="amx"))
np.testing.assert_array_equal(y, qlinear_ref(x, qw, scale, bias, "none"))
print("ok")
"""


@pytest.mark.skipif("amx" not in PATHS, reason="no AMX on this CPU/OS")
def test_amx_threads_started_before_permission():
    """The XTILEDATA permission is process-wide: workers that existed before
    the request run tiles too (a failure here is SIGILL, so a subprocess)."""
    import subprocess
    import sys

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 Numba threads")
    r = subprocess.run([sys.executable, "-c", _AMX_THREADS_SCRIPT], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), (r.returncode, r.stderr[-2000:])


@pytest.mark.parametrize("activation", ["none", "gelu"])
def test_int16_two_pass_matches_reference_and_is_closer(activation):
    """qlinear_int16 == its reference (float tolerance) and is far closer to exact float math than int8."""
    from edgebert.runtime.kernels.gemm_ref import qlinear_int16_ref

    rng = np.random.default_rng(11)
    M, K, N = 33, 385, 47
    qw, scale, bias = _weights(rng, N, K)
    x = rng.normal(0, 2, (M, K)).astype(np.float32)
    x[:, 7] *= 40  # an outlier channel, the case int16 is for
    s = rng.uniform(0.5, 2, K).astype(np.float32)
    for path in PATHS:
        packed = gemm.pack_linear(qw, scale, bias, input_scale=s, path=path)
        y = gemm.qlinear_int16(x, packed, gemm.pack_linear(qw, scale, path=path), activation=activation)
        np.testing.assert_array_equal(gemm.qlinear_int16(x, packed, gemm.residual_pass(packed), activation=activation), y)
        ref = qlinear_int16_ref(x, qw, scale, bias, activation, input_scale=s)
        np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-4)  # float32 rounding of the sum; GELU_MAX_ERR
    exact = (x * s).astype(np.float64) @ (qw.astype(np.float64) * scale[:, None]).T + bias
    if activation == "gelu":
        from edgebert.runtime.kernels.gemm_ref import gelu_ref
        exact = gelu_ref(exact)
    one = qlinear_ref(x, qw, scale, bias, activation, input_scale=s)
    assert np.abs(ref - exact).max() < np.abs(one - exact).max() / 50
