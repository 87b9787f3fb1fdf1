"""Calibration's vectorised activation fake-quantizer (converters/calibrate.fake_quantize_rows) against the
runtime's per-row reference (runtime/kernels/gemm_ref.fake_quantize_rows_ref): bit-identical, including
constant rows and rows whose 127 / half-range overflows float32."""
from __future__ import annotations

import numpy as np

from edgebert.converters.calibrate import fake_quantize_rows, simulated_sqnr
from edgebert.runtime.kernels.gemm_ref import fake_quantize_rows_ref


def test_fake_quantize_rows_is_the_reference_bit_for_bit():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((300, 96)) * rng.uniform(0.01, 50, (300, 1))).astype(np.float32)
    x[3], x[7] = 2.5, 0.0  # constant rows: their centre
    x[9], x[9, 0] = 1e-38, 2e-38  # 127 / half-range overflows float32: the centre too
    x[11, 5] = -1e30  # one huge outlier
    got, ref = fake_quantize_rows(x), fake_quantize_rows_ref(x)
    assert got.dtype == ref.dtype == np.float32
    assert np.array_equal(got.view(np.int32), ref.view(np.int32))
    assert fake_quantize_rows(np.zeros((4, 0), np.float32)).shape == (4, 0)


def test_simulated_sqnr_is_measure_errors_sqnr():
    """The dot-product SQNR equals quantize.measure_error's on the same outputs (float64 summation order
    aside), and is infinite for an exactly representable layer."""
    from edgebert.converters import quantize

    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((200, 64)).astype(np.float32), 0.05 * rng.standard_normal((48, 64)).astype(np.float32)
    q, scale, _ = quantize.quantize_rows(w)
    exact = x.astype(np.float64) @ w.T.astype(np.float64)
    approx = fake_quantize_rows_ref(x).astype(np.float64) @ quantize.dequantize_rows(q, scale).T.astype(np.float64)
    assert abs(simulated_sqnr(x, w, None) - quantize.measure_error(exact, approx).sqnr_db) < 1e-9
    ones = np.ones((5, 8), np.float32)
    assert simulated_sqnr(ones, np.ones((3, 8), np.float32), None) == float("inf")
