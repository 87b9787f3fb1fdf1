"""Outlier channels of an int8 linear (gemm.pack_linear(outliers=...)): every path this CPU runs against
the NumPy reference, the int16 two-pass linear with them, and their checks."""

import numpy as np
import pytest

from edgebert.errors import InputError
from edgebert.runtime.kernels import cpu, gemm
from edgebert.runtime.kernels.gemm_ref import qlinear_int16_ref, qlinear_ref

PATHS = cpu.available_paths()
EPS32 = float(np.finfo(np.float32).eps)
# The kernel adds the float32 channels in the reference's order, one rounding per product and sum, so x86
# is bit-identical; a backend that contracts a product and its sum into an FMA (aarch64) differs by one
# rounding per step: k steps of 2 ulps of the largest partial sum.
STEP_RTOL = 2 * EPS32


def _layer(rng, M=37, K=130, N=45, k=5):
    qw = rng.integers(-127, 128, size=(N, K), dtype=np.int8)
    scale = rng.uniform(1e-3, 2e-2, N).astype(np.float32)
    bias = rng.normal(0, 1, N).astype(np.float32)
    x = rng.normal(0, 1, (M, K)).astype(np.float32)
    idx = np.sort(rng.choice(K, k, replace=False)).astype(np.int32)
    x[:, idx] *= 60  # the channels that would coarsen every row's int8 levels
    cols = rng.normal(0, 0.02, (N, k)).astype(np.float32)
    return x, qw, scale, bias, (idx, cols)


def _tolerance(ref, k):
    return STEP_RTOL * (k + 2) * max(1.0, float(np.abs(ref).max()))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("activation", ["none", "gelu"])
def test_outliers_match_the_reference(path, activation):
    rng = np.random.default_rng(3)
    x, qw, scale, bias, outliers = _layer(rng)
    s = rng.uniform(0.5, 2, qw.shape[1]).astype(np.float32)
    before = qw.copy()
    packed = gemm.pack_linear(qw, scale, bias, input_scale=s, path=path, outliers=outliers)
    np.testing.assert_array_equal(qw, before)  # pack_linear zeroes a copy's columns, not the caller's
    y = gemm.qlinear(x, packed, activation=activation)
    ref = qlinear_ref(x, qw, scale, bias, activation, input_scale=s, outliers=outliers)
    tol = _tolerance(ref, len(outliers[0]))
    if activation == "gelu":  # the float32 GELU against the float64 one
        tol += gemm.GELU_MAX_ERR * max(1.0, float(np.abs(ref).max()))
    assert np.abs(y - ref).max() <= tol


@pytest.mark.parametrize("path", PATHS)
def test_outliers_with_the_int16_two_pass_linear(path):
    rng = np.random.default_rng(4)
    x, qw, scale, bias, outliers = _layer(rng)
    packed = gemm.pack_linear(qw, scale, bias, path=path, outliers=outliers)
    y = gemm.qlinear_int16(x, packed, gemm.residual_pass(packed), activation="gelu")
    ref = qlinear_int16_ref(x, qw, scale, bias, "gelu", outliers=outliers)
    assert np.abs(y - ref).max() <= _tolerance(ref, len(outliers[0])) + gemm.GELU_MAX_ERR * np.abs(ref).max()


def test_outliers_are_what_float32_would_give_them():
    """The point of them: with a few huge channels, int8 with outliers is far closer to float math.
    The float32 columns are the layer's own weight there, the int8 columns elsewhere."""
    rng = np.random.default_rng(5)
    x, qw, scale, bias, (idx, _) = _layer(rng, k=3)
    w = qw.astype(np.float32) * scale[:, None]
    exact = x.astype(np.float64) @ w.T.astype(np.float64) + bias
    with_outliers = qlinear_ref(x, qw, scale, bias, outliers=(idx, np.ascontiguousarray(w[:, idx])))
    plain = qlinear_ref(x, qw, scale, bias)
    err_with, err_plain = np.abs(with_outliers - exact).max(), np.abs(plain - exact).max()
    assert err_with < err_plain / 10, (err_with, err_plain)


@pytest.mark.parametrize("bad, match", [
    ((np.array([3, 1], np.int32), None), "strictly increasing"),
    ((np.array([1, 1], np.int32), None), "strictly increasing"),
    ((np.array([-1, 4], np.int32), None), "strictly increasing"),
    ((np.array([4, 130], np.int32), None), "strictly increasing"),
    ((np.array([1, 4], np.int64), None), "int32"),
    ((np.arange(65, dtype=np.int32), None), "65 outlier channels"),
    ((np.array([1, 4], np.int32), np.zeros((45, 3), np.float32)), r"shape \(45, 2\)"),
    ((np.array([1, 4], np.int32), np.full((45, 2), np.nan, np.float32)), "NaN"),
    ((np.array([1, 4], np.int32), np.zeros((45, 2), np.float64)), "float32"),
])
def test_bad_outliers_are_refused(bad, match):
    rng = np.random.default_rng(6)
    _, qw, scale, bias, _ = _layer(rng)
    idx, cols = bad
    cols = np.zeros((qw.shape[0], len(idx)), np.float32) if cols is None else cols
    with pytest.raises(InputError, match=match):
        gemm.pack_linear(qw, scale, bias, outliers=(idx, cols))
