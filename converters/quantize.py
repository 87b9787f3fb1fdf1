"""The one place where weights are quantized.

Convention (docs/format.md): ``w ~= q * scale[:, None]``, ``scale = amax / 127``
per output row, symmetric, -128 unused. Every function returns the worst error
so the converter can report it per tensor (as llama2.c's exporter does).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

QMAX = 127


@dataclass(frozen=True)
class QuantError:
    """Worst error of one quantized tensor, for the report."""

    max_abs: float  # max |w - dequant(q)|
    max_rel: float  # max_abs / max |w|  (0 for an all-zero tensor)
    sqnr_db: float  # 10 log10(sum w^2 / sum (w - dq)^2); inf when exact

    def as_dict(self) -> dict:
        sqnr = self.sqnr_db if np.isfinite(self.sqnr_db) else None
        return {"max_abs": self.max_abs, "max_rel": self.max_rel, "sqnr_db": sqnr}


def quantize_rows(w: np.ndarray) -> tuple[np.ndarray, np.ndarray, QuantError]:
    """Symmetric int8 per row: (N, K) float -> q (N, K) int8, scale (N,) float32."""
    if w.ndim != 2:
        raise ValueError(f"quantize_rows expects a 2-D weight, got shape {w.shape}")
    w = np.ascontiguousarray(w, dtype=np.float32)
    amax = np.abs(w).max(axis=1)
    scale = np.where(amax > 0, amax / np.float32(QMAX), np.float32(1)).astype(np.float32)
    q = np.clip(np.rint(w / scale[:, None]), -QMAX, QMAX).astype(np.int8)
    return q, scale, measure_error(w, dequantize_rows(q, scale))


def dequantize_rows(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Inverse of :func:`quantize_rows` (up to rounding): (N, K) float32."""
    return q.astype(np.float32) * scale[:, None]


def measure_error(w: np.ndarray, approx: np.ndarray) -> QuantError:
    """Worst absolute/relative error and SQNR of ``approx`` against ``w``."""
    w64 = w.astype(np.float64)
    err = w64 - approx.astype(np.float64)
    max_abs = float(np.abs(err).max()) if err.size else 0.0
    amax = float(np.abs(w64).max()) if w64.size else 0.0
    noise = float((err * err).sum())
    signal = float((w64 * w64).sum())
    sqnr = float("inf") if noise == 0 else 10.0 * np.log10(signal / noise) if signal > 0 else float("-inf")
    return QuantError(max_abs=max_abs, max_rel=max_abs / amax if amax > 0 else 0.0, sqnr_db=sqnr)
