"""Calibration on real text: SmoothQuant scales and the sensitivity-driven higher-precision fallback.

Runs the FP32 model (our own runtime, float32 weights) over calibration text,
records what enters every linear layer, then:
- SmoothQuant (Xiao et al. 2023): per input channel ``s = amax_x^a / amax_w^(1-a)``;
  the file stores ``W * s`` (quantized) and ``input_scale = 1/s``, which the
  runtime applies while quantizing the activations. Outlier channels of the
  activations move into the weights, which quantize per output row anyway.
- Outlier channels: per linear, the few input channels whose calibrated range
  dwarfs the others' (after smoothing); the runtime leaves them out of the
  per-token int8 quantization, whose levels they would coarsen for every other
  channel, and adds them in float32 (the layer's own weight columns there).
- Sensitivity: each linear's own output SQNR when its inputs and weights are
  quantized as the runtime will (simulated in float64 on the recorded inputs);
  the lowest ones run with higher-precision activations under a user budget:
  ``int16`` (the activation and its int8 quantization residual as two int8
  passes, about 15 bits, our own deterministic kernels, twice the cost of one
  layer) or ``float32`` (dequantized weight, BLAS).
The decisions are data (a ``QuantPlan``) the pipeline applies; quantization
itself stays in ``quantize.py``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from edgebert import names
from edgebert.errors import InputError

from . import quantize
from .spec import ModelSpec

DEFAULT_ALPHA = 0.5
DEFAULT_KEEP = 1  # measured: the most sensitive layer in int16 lifts MiniLM's neighbour agreement past 0.95
KEEP_MODES = ("int16", "float32")
MIN_SMOOTH = 1e-5  # a dead input channel must not give a zero (or infinite) scale
BATCH = 32
# Outlier channels: at most DEFAULT_OUTLIERS per linear and one in OUTLIER_SHARE of its input channels (the
# float32 work: 6 % of a 128 x 768 x 2304 int8 linear's time at 16 channels, AVX2), only channels whose
# calibrated |x| max exceeds OUTLIER_RATIO times the median channel's
DEFAULT_OUTLIERS = 16
OUTLIER_SHARE = 48
OUTLIER_RATIO = 2.0


@dataclass
class QuantPlan:
    alpha: float
    texts: int
    source: str
    smooth: dict[str, np.ndarray] = field(default_factory=dict)  # linear prefix -> s (K,)
    sensitivity: dict[str, float] = field(default_factory=dict)  # linear prefix -> simulated SQNR dB
    higher: dict[str, dict] = field(default_factory=dict)  # linear prefix -> {"activations", "why"}
    outlier_limit: int = 0
    outliers: dict[str, np.ndarray] = field(default_factory=dict)  # linear prefix -> channel indices (k,) int32

    def summary(self) -> dict:
        return {"calibration": {"texts": self.texts, "source": self.source},
                "smoothquant": {"alpha": self.alpha, "layers": sorted(self.smooth)},
                "higher_precision": self.higher,
                "outliers": {"limit": self.outlier_limit,
                             "layers": {p: int(len(v)) for p, v in sorted(self.outliers.items())}},
                "sensitivity_sqnr_db": {k: round(v, 2) for k, v in sorted(self.sensitivity.items())}}


def calibration_texts(path: str | Path | None = None) -> tuple[list[str], str]:
    """Texts from ``path`` (one per line, UTF-8) or the built-in set; and where they came from."""
    if path is None:
        text = resources.files("edgebert").joinpath("data/calibration.txt").read_text(encoding="utf-8")
        source = "built-in"
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise InputError(f"{path}: calibration text is not valid UTF-8 ({e.reason} at byte {e.start})") from None
        source = str(path)
    texts = [line.strip() for line in text.splitlines() if line.strip()]
    if not texts:
        raise InputError(f"{source}: no calibration text (one text per line)")
    return texts, source


def linear_inputs(spec: ModelSpec, texts: list[str]) -> dict[str, np.ndarray]:
    """FP32 forward over ``texts``; what enters each linear layer, (tokens, K) per prefix."""
    from edgebert.format import validate_graph
    from edgebert.runtime.executor import Executor, pack_sequences
    from edgebert.text import TextEncoder

    from .graph import build_graph

    graph = build_graph(spec.config, spec.head, spec.head_graph)
    tensors = {name: slot.value for name, slot in spec.slots.items()}
    executor = Executor(graph, tensors, validate_graph(graph, tensors, spec.config.as_dict()), backend="numba")
    linears: dict[str, list[str]] = {}  # prefix -> the inputs of every node reading it (shared layers: each layer)
    for n in graph["nodes"]:
        if n["op"] == "linear" and _role(spec, n["params"]["linear"]).calibrated:
            linears.setdefault(n["params"]["linear"], []).append(n["inputs"][0])
    encoded = TextEncoder(spec.tokenizer_json, spec.max_length).encode(texts)
    captured: dict[str, list[np.ndarray]] = {p: [] for p in linears}
    for start in range(0, len(encoded), BATCH):
        wanted = sorted({v for values in linears.values() for v in values})
        out = executor.run(*pack_sequences(encoded[start:start + BATCH]), outputs=wanted)
        for prefix, values in linears.items():
            captured[prefix] += [out[v].copy() for v in values]
    return {p: np.concatenate(v) for p, v in captured.items()}


def _role(spec: ModelSpec, prefix: str) -> names.Role:
    """The role of a linear layer, declared on its weight slot (edgebert/names.py): which layers
    calibration measures and smooths is a trait of the role (SmoothQuant: the LayerNorm-fed
    ones, where the outlier channels live), not a matter of how the layer is named."""
    return spec.slots[prefix + names.WEIGHT].role


def smoothing_scales(x: np.ndarray, w: np.ndarray, alpha: float) -> np.ndarray:
    """SmoothQuant's per-input-channel migration strength, (K,) float32."""
    amax_x = np.abs(x).max(axis=0).astype(np.float64)
    amax_w = np.abs(w).max(axis=0).astype(np.float64)
    s = np.power(np.maximum(amax_x, MIN_SMOOTH), alpha) / np.power(np.maximum(amax_w, MIN_SMOOTH), 1 - alpha)
    return np.maximum(s, MIN_SMOOTH).astype(np.float32)


def outlier_channels(xs: np.ndarray, limit: int) -> np.ndarray | None:
    """The input channels of a linear (its smoothed calibration inputs xs, (tokens, K)) to keep out of
    the int8 activations: up to min(limit, K // OUTLIER_SHARE) of the widest ones, each wider than
    OUTLIER_RATIO times the median channel; sorted int32, or None when no channel stands out."""
    from edgebert.ops import MAX_OUTLIERS

    k = min(limit, xs.shape[1] // OUTLIER_SHARE, MAX_OUTLIERS)
    if k <= 0 or xs.shape[0] == 0:
        return None
    amax = np.abs(xs).max(axis=0)
    top = np.argsort(-amax, kind="stable")[:k]
    top = top[amax[top] > OUTLIER_RATIO * np.median(amax)]
    return np.sort(top).astype(np.int32) if top.size else None


def simulated_sqnr(x: np.ndarray, w: np.ndarray, s: np.ndarray | None, outliers: np.ndarray | None = None) -> float:
    """Output SQNR (dB) of one linear when quantized as at run time, on recorded inputs."""
    exact = x.astype(np.float64) @ w.T.astype(np.float64)
    xs, ws = (x, w) if s is None else (x * (1.0 / s), w * s)
    if outliers is not None:  # those channels in float32, the rest through int8
        xs, ws = xs.copy(), ws.copy()
        xs[:, outliers], ws[:, outliers] = 0, 0
    q, scale, _ = quantize.quantize_rows(ws)
    approx = fake_quantize_rows(xs.astype(np.float32)).astype(np.float64) @ \
        quantize.dequantize_rows(q, scale).T.astype(np.float64)
    if outliers is not None:
        approx += x[:, outliers].astype(np.float64) @ w[:, outliers].T.astype(np.float64)
    # quantize.measure_error's SQNR with dot products (BLAS) instead of temporaries and pairwise sums: on
    # MiniLM's (tokens, 1536) outputs 1.5 s less; the same value up to float64 summation order
    err = (exact - approx).ravel()
    noise, signal = float(err @ err), float(exact.ravel() @ exact.ravel())
    return float("inf") if noise == 0 else 10.0 * np.log10(signal / noise) if signal > 0 else float("-inf")


def fake_quantize_rows(x: np.ndarray) -> np.ndarray:
    """runtime/kernels/gemm_ref.fake_quantize_rows_ref over all rows at once (its per-row Python loop took
    3 s of MiniLM's calibration): the same float32 operations per element, so bit-identical (tested)."""
    x = np.asarray(x, dtype=np.float32)
    if x.shape[1] == 0:
        return np.zeros(x.shape, np.float32)
    lo, hi = x.min(axis=1), x.max(axis=1)
    c = (hi + lo) * np.float32(0.5)
    r = (hi - lo) * np.float32(0.5)
    with np.errstate(divide="ignore", over="ignore"):
        inv = np.float32(127.0) / r  # float32 division
    ok = np.isfinite(inv)  # else (a constant row): q = 0, sa = 1, the row is its centre
    inv = np.where(ok, inv, np.float32(0))
    q = np.clip(np.rint((x - c[:, None]) * inv[:, None]), -127, 127).astype(np.int8)
    sa = np.where(ok, r / np.float32(127.0), np.float32(1))
    return q.astype(np.float32) * sa[:, None] + c[:, None]


def make_plan(spec: ModelSpec, texts: list[str], source: str, alpha: float = DEFAULT_ALPHA,
              keep: int = DEFAULT_KEEP, keep_as: str = "int16", outliers: int = DEFAULT_OUTLIERS) -> QuantPlan:
    """Smoothing scales for the LayerNorm-fed linears, outlier channels and sensitivity of all, the
    fallback choice. ``outliers``: at most this many float32 channels per linear (0: none)."""
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"smoothing alpha must be within 0..1, got {alpha}")
    if keep < 0:
        raise InputError(f"the higher-precision layer budget must be >= 0, got {keep}")
    if keep_as not in KEEP_MODES:
        raise InputError(f"higher precision must be one of {KEEP_MODES}, got {keep_as!r}")
    from edgebert.ops import MAX_OUTLIERS

    if not isinstance(outliers, int) or not 0 <= outliers <= MAX_OUTLIERS:
        raise InputError(f"outlier channels per linear must be within 0..{MAX_OUTLIERS}, got {outliers!r}")
    plan = QuantPlan(alpha=alpha, texts=len(texts), source=source, outlier_limit=outliers)
    for prefix, x in linear_inputs(spec, texts).items():
        w = spec.slots[prefix + names.WEIGHT].value
        s = smoothing_scales(x, w, alpha) if _role(spec, prefix).smoothed and alpha > 0 else None
        if s is not None:
            plan.smooth[prefix] = s
        chosen = outlier_channels(x if s is None else x * (1.0 / s), outliers)
        if chosen is not None:
            plan.outliers[prefix] = chosen
        plan.sensitivity[prefix] = simulated_sqnr(x, w, s, chosen)
    for rank, prefix in enumerate(sorted(plan.sensitivity, key=plan.sensitivity.get)[:keep], start=1):
        plan.higher[prefix] = {"activations": keep_as, "why": f"sensitivity rank {rank}: lowest simulated output "
                                                              f"SQNR ({plan.sensitivity[prefix]:.1f} dB)"}
    return plan
