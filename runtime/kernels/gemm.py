"""Int8 linear layer: public API, validation and dispatch to a CPU path.

    packed = pack_linear(qw, scale, bias)        # once per layer
    y = qlinear(x, packed, activation="gelu")    # x (M, K) f32 -> y (M, N) f32

Semantics (every path, bit for bit):
xs = x * input_scale (SmoothQuant, ones by default); per row, around its
centre c = (max + min)/2 with half-range r: q = clip(rint((xs - c) * 127/r)),
sa = r/127 (the row's whole range on 255 levels); acc = q @ qw.T in exact
int32; y = float32(acc) * (sa[m] * scale[n]) + (c[m] * wsum[n] + bias[n])
with wsum = scale * rowsum(qw); optional erf GELU within
``GELU_MAX_ERR``. Outlier channels (``outliers=(idx, w_cols)``) are left out of
the int8 product (their input scale and int8 weight columns count as zero) and
added in float32, ``y += x[:, idx] @ w_cols.T``, before the GELU. Each path's record in ``isa.PATHS`` names its module, its
constants and its kernels; the module is imported (so its intrinsics
compiled) only when selected: see ``cpu.py``. With ``kernels=`` a native
library (``runtime/native``) runs them instead: the same code compiled ahead
of time, bit for bit; this module then imports no Numba.
"""

import importlib
import threading
from dataclasses import dataclass, field, replace

import numpy as np

from ...errors import InputError
from . import cpu
from .isa import PATHS, IsaPath
from .packing import PACKERS

__all__ = ["PackedLinear", "pack_linear", "qlinear", "qlinear_int16", "residual_pass", "panel_rows", "ffn", "quantize_rows",
           "GELU_MAX_ERR"]

# Largest error of our GELU vs 0.5*y*(1+erf(y/sqrt(2))) evaluated in float64,
# relative to max(1, |y|). Measured max over a dense grid is 2.7e-7 (float32
# rational erf, |erf error| <= 4.5e-7); this is the promise tests check.
GELU_MAX_ERR = 1e-6
_ACTIVATIONS = ("none", "gelu")
_MAX_K = (2**31 - 1) // (127 * 127)  # 133,143: int32 accumulation stays exact
_SCRATCH_DTYPES = {name: np.dtype(p.scratch_dtype) for name, p in PATHS.items()}  # per path, looked up per call


def _path_module(path):
    """The record of ``path`` (validated against this CPU first) and its imported module."""
    record = PATHS[cpu.kernel_path(path)]
    return record, importlib.import_module(f".{record.module}", __package__)


@dataclass(frozen=True, eq=False)
class PackedLinear:
    """Weights packed once for one kernel path; N, K are the original sizes."""

    path: str
    N: int
    K: int
    Kp: int  # K padded to the path's k-group
    w: np.ndarray  # packed int8 weights, layout private to the path
    corr: np.ndarray  # (Np,) int32 zero-point correction (128*colsum or 0)
    scale: np.ndarray  # (N,) float32 per output row
    wsum: np.ndarray  # (N,) float32 scale * colsum(qw): the row-centre term c * sum_k W[n, k]
    bias: np.ndarray  # (N,) float32
    input_scale: np.ndarray  # (K,) float32 per input channel (SmoothQuant), ones when absent
    kernels: object = field(repr=False)  # the path's module
    isa: IsaPath = field(repr=False)  # the path's record: its constants and kernel names
    outliers: tuple | None = None  # (idx (k,) int32, weight columns (k, N) float32): added in float32


def _check_vector(name, v, n):
    if not isinstance(v, np.ndarray) or v.dtype != np.float32:
        raise InputError(f"{name} must be a float32 numpy array, got {getattr(v, 'dtype', type(v).__name__)}")
    if v.shape != (n,):
        raise InputError(f"{name} must have shape ({n},) to match qw's N, got {v.shape}")
    if not np.all(np.isfinite(v)):
        raise InputError(f"{name} contains NaN or Inf")
    return np.ascontiguousarray(v)


def pack_linear(qw, scale, bias=None, input_scale=None, path=None, kernels=None, outliers=None):
    """Validate int8 weights qw (N, K), scale (N,), bias (N,)|None, input_scale (K,)|None; pack them.

    ``outliers``: None, or (idx (k,) int32 strictly increasing in [0, K), w_cols (N, k) float32), the
    input channels computed in float32 (the int8 weight's columns there are ignored).

    ``path`` forces a kernel path (default: ``EDGEBERT_KERNEL`` or the best
    this CPU runs); ``kernels``, a native library, runs its own path.
    """
    if not isinstance(qw, np.ndarray) or qw.dtype != np.int8:
        raise InputError(f"qw must be an int8 numpy array, got {getattr(qw, 'dtype', type(qw).__name__)}")
    if qw.ndim != 2 or 0 in qw.shape:
        raise InputError(f"qw must be a non-empty 2-D array (N, K), got shape {qw.shape}")
    if not qw.flags.c_contiguous:
        raise InputError("qw must be C-contiguous")
    if qw.min() < -127:
        raise InputError("qw must lie in [-127, 127] (symmetric int8); found -128")
    N, K = qw.shape
    if K > _MAX_K:
        raise InputError(f"K={K} exceeds {_MAX_K}: 127*127*K could overflow the int32 accumulators")
    scale = _check_vector("scale", scale, N)
    bias = np.zeros(N, np.float32) if bias is None else _check_vector("bias", bias, N)
    input_scale = np.ones(K, np.float32) if input_scale is None else _check_vector("input_scale", input_scale, K)
    if outliers is not None:
        idx, cols = check_outliers(outliers, N, K)
        qw = qw.copy()
        qw[:, idx] = 0  # these channels leave the int8 product: zero weight and zero input scale there
        input_scale = input_scale.copy()
        input_scale[idx] = 0
        outliers = (np.array(idx, np.int32), np.array(cols.T, np.float32, order="C"))  # own writable copies
    if kernels is not None:
        record, mod = PATHS[kernels.path], kernels
        w, corr, Kp = PACKERS[record.name](qw)
    else:
        record, mod = _path_module(path)
        w, corr, Kp = getattr(mod, record.pack)(qw)
    return PackedLinear(record.name, N, K, Kp, w, corr, scale.copy(), row_sums(qw, scale), bias.copy(),
                        input_scale.copy(), mod, record, outliers)


def check_outliers(outliers, N, K):
    """(idx, w_cols) checked: idx (k,) int32, 1 <= k <= MAX_OUTLIERS, strictly increasing within [0, K);
    w_cols (N, k) float32, finite."""
    from edgebert.ops import MAX_OUTLIERS

    if not isinstance(outliers, tuple) or len(outliers) != 2:
        raise InputError("outliers must be a pair (channel indices, weight columns)")
    idx, cols = outliers
    if not isinstance(idx, np.ndarray) or idx.dtype != np.int32 or idx.ndim != 1:
        raise InputError(f"outlier channels must be a 1-D int32 array, got {getattr(idx, 'dtype', type(idx).__name__)}")
    k = idx.shape[0]
    if not 1 <= k <= min(K, MAX_OUTLIERS):
        raise InputError(f"{k} outlier channels: expected 1 to {min(K, MAX_OUTLIERS)}")
    if idx[0] < 0 or idx[-1] >= K or (k > 1 and not np.all(np.diff(idx) > 0)):
        raise InputError(f"outlier channels must be strictly increasing within [0, {K}), got {idx.tolist()[:8]}")
    if not isinstance(cols, np.ndarray) or cols.dtype != np.float32 or cols.shape != (N, k):
        raise InputError(f"outlier weight columns must be float32 of shape ({N}, {k}), "
                         f"got {getattr(cols, 'dtype', type(cols).__name__)} {getattr(cols, 'shape', '')}")
    if not np.all(np.isfinite(cols)):
        raise InputError("outlier weight columns contain NaN or Inf")
    return np.ascontiguousarray(idx), cols


def residual_pass(packed):
    """``packed`` as qlinear_int16's second pass needs it (no bias, no input scale),
    sharing its packed weights: what pack_linear(qw, scale) gives, without a second copy."""
    return replace(packed, bias=np.zeros(packed.N, np.float32), input_scale=np.ones(packed.K, np.float32),
                   outliers=None)


def row_sums(qw, scale):
    """scale[n] * sum_k qw[n, k] in float32 (the integer sum is exact below 2**24)."""
    return qw.sum(axis=1, dtype=np.int64).astype(np.float32) * scale


_tls = threading.local()


def _shared(kernels, name):
    """gemm_portable's kernel ``name`` (the same on every path), from the native library where one runs."""
    if hasattr(kernels, "run_dynamic"):
        return getattr(kernels, name)
    from . import gemm_portable

    return getattr(gemm_portable, name)


def _dynamic(kernel, *args, kernels=None):
    """Run a parallel kernel with dynamic scheduling (chunks of 1 tile).

    With a static split, one core busy with another process stalls the whole
    call (measured on 2 shared cores). Each tile is still computed entirely by
    one thread, so results do not depend on the schedule.
    """
    if hasattr(kernels, "run_dynamic"):  # the native library's own scheduler
        return kernels.run_dynamic(kernel, *args)
    set_chunk = _chunk_setter()
    old = set_chunk(1)  # returns the previous size
    try:
        return kernel(*args)
    finally:
        set_chunk(old)


_set_chunk = None


def _chunk_setter():
    """numba.set_parallel_chunksize without its per-call thread-pool check (about 4 us a
    call, two calls per kernel: 10 % of a 16-token forward): the pool's own setter, bound
    once the pool is up; the public function where a Numba version lacks it."""
    global _set_chunk
    if _set_chunk is None:
        import numba

        numba.set_parallel_chunksize(numba.get_parallel_chunksize())  # starts the thread pool
        from numba.np.ufunc import parallel

        _set_chunk = getattr(parallel, "_set_parallel_chunksize", None) or numba.set_parallel_chunksize
    return _set_chunk


def _aligned_empty(n_bytes, align=64):
    """Uninitialised u8 buffer starting on an ``align``-byte boundary (AMX tile
    rows that straddle cache lines load about 3x slower)."""
    buf = np.empty(n_bytes + align, np.uint8)
    off = -buf.ctypes.data % align
    return buf[off : off + n_bytes]


def _scratch(dtype, n_bytes, M):
    """Thread-local reusable (quantized rows, row scales): no allocation per call."""
    buf = getattr(_tls, "buf", None)
    if buf is None or buf[0].size < n_bytes or buf[1].size < 2 * M:
        buf = (_aligned_empty(max(n_bytes, 64)), np.empty(max(2 * M, 2), np.float32))
        _tls.buf = buf
    return buf[0][:n_bytes].view(dtype), buf[1][:2 * M].reshape(2, M)


def _check_x(x, K):
    if not isinstance(x, np.ndarray) or x.dtype != np.float32:
        raise InputError(f"x must be a float32 numpy array, got {getattr(x, 'dtype', type(x).__name__)}")
    if x.ndim != 2 or x.shape[1] != K:
        raise InputError(f"x must have shape (M, {K}), got {x.shape}")
    if not x.flags.c_contiguous:
        raise InputError("x must be C-contiguous (use np.ascontiguousarray)")


def _check_out(out, shape):
    if not isinstance(out, np.ndarray) or out.dtype != np.float32:
        raise InputError(f"out must be a float32 numpy array, got {getattr(out, 'dtype', type(out).__name__)}")
    if out.shape != shape:
        raise InputError(f"out must have shape {shape}, got {out.shape}")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise InputError("out must be C-contiguous and writeable")


def qlinear(x, packed, out=None, activation="none"):
    """y = dequant(quant(x) @ qw.T) + bias, optionally GELU; x (M, K) -> out (M, N)."""
    if not isinstance(packed, PackedLinear):
        raise InputError(f"packed must come from pack_linear, got {type(packed).__name__}")
    if activation not in _ACTIVATIONS:
        raise InputError(f"activation must be one of {_ACTIVATIONS}, got {activation!r}")
    _check_x(x, packed.K)
    M = x.shape[0]
    if out is None:  # 64-byte aligned rows start: faster tile/vector stores
        out = _aligned_empty(M * packed.N * 4).view(np.float32).reshape(M, packed.N)
    else:
        _check_out(out, (M, packed.N))
        if np.may_share_memory(x, out):
            raise InputError("out must not overlap x")
    if M == 0:
        return out
    isa = packed.isa
    mp = -(-M // isa.mr) * isa.mr
    dtype = _SCRATCH_DTYPES[packed.path]
    xq, rowq = _scratch(dtype, mp * packed.Kp * dtype.itemsize, M)
    gelu = activation == "gelu"
    bad = _dynamic(
        getattr(packed.kernels, isa.qlinear.name), x, packed.w, packed.corr, packed.scale, packed.wsum, packed.bias,
        packed.input_scale, out, xq, rowq, packed.Kp, gelu and packed.outliers is None, kernels=packed.kernels
    )
    if bad:
        raise InputError(f"x has NaN or Inf in {bad} of its {M} rows")
    if packed.outliers is not None:  # the float32 channels, then the GELU
        _shared(packed.kernels, "outlier_add")(x, packed.outliers[0], packed.outliers[1], out, gelu)
    return out


def panel_rows(layers, M, threads):
    """Rows per task for the fused row-panel kernel ``ffn``, or 0 where it does not apply.

    It applies on paths that have it (AMX) when the layers share the path
    and there are at least ``threads`` panels: one row panel runs on one
    thread, so a short input on 2 threads keeps the column-split kernels.
    64 rows keep a panel's hidden rows, re-quantized rows and both weight
    matrices of a MiniLM-sized feed-forward block within a 2 MiB L2.
    """
    isa = layers[0].isa
    if isa.ffn is None or any(p.isa is not isa for p in layers) or M == 0:
        return 0
    for panel in (64, isa.mr):
        if -(-M // panel) >= threads:
            return panel
    return 0


def ffn(x, up, down, residual, gamma, beta, eps, out, panel, two_pass=False):
    """out = LayerNorm(residual + down(GELU(up(x)))) as one kernel call (see gemm_amx.ffn_kernel).

    Bit-identical to qlinear(x, up, activation="gelu") -> qlinear(., down)
    (``two_pass``: qlinear_int16(., down, residual-pass weights)) ->
    add_norm(., residual); ``panel`` comes from ``panel_rows``.
    Per-thread scratch (about 0.6 MiB a thread for MiniLM) is kept between calls.
    """
    if up.N != down.K:
        raise InputError(f"up has {up.N} outputs but down takes {down.K} inputs")
    isa = up.isa
    if isa.ffn is None or down.isa is not isa:
        raise InputError(f"no fused feed-forward kernel for paths {up.path!r} and {down.path!r}")
    if up.outliers is not None or down.outliers is not None:
        raise InputError("the fused feed-forward kernel has no outlier channels: run the layers one by one")
    if isinstance(panel, bool) or not isinstance(panel, int) or panel <= 0 or panel % isa.mr:
        raise InputError(f"panel must be a positive multiple of {isa.mr} rows, got {panel!r}")
    _check_x(x, up.K)
    M = x.shape[0]
    _check_out(out, (M, down.N))
    _check_x(residual, down.N)
    if residual.shape[0] != M:
        raise InputError(f"residual must have {M} rows like x, got {residual.shape[0]}")
    if np.may_share_memory(x, out):
        raise InputError("out must not overlap x")
    gamma, beta = _check_vector("gamma", gamma, down.N), _check_vector("beta", beta, down.N)
    h, xq1, xq2, rowq, o2, zeros, ones = _ffn_scratch(panel, up.N, up.Kp, down.Kp, down.N)
    kernel = getattr(up.kernels, isa.ffn.name)
    bad = _dynamic(kernel, x, up.w, up.corr, up.scale, up.wsum, up.bias, up.input_scale, up.Kp,
                   down.w, down.corr, down.scale, down.wsum, down.bias, down.input_scale, down.Kp,
                   residual, gamma, beta, float(eps), out, panel, bool(two_pass), h, xq1, xq2, rowq, o2, zeros, ones)
    if bad:
        raise InputError(f"x has NaN or Inf in {bad} of its {M} rows (or in the block's hidden rows)")
    return out


def _ffn_scratch(panel, n1, kp1, kp2, n2):
    """Per-thread (hidden rows, quantized rows x2, row scales, second-pass rows) for ``ffn``,
    plus the second pass's zero bias and unit input scale; cached per shape."""
    key = ("ffn", panel, n1, kp1, kp2, n2)
    cache = _tls.__dict__.setdefault("fused", {})
    if key not in cache:
        import numba

        t = numba.config.NUMBA_NUM_THREADS
        cache[key] = (np.empty((t, panel, n1), np.float32),
                      _aligned_empty(t * panel * kp1).reshape(t, panel * kp1),
                      _aligned_empty(t * panel * kp2).reshape(t, panel * kp2),
                      np.ones((t, 3, 2, panel), np.float32), np.empty((t, panel, n2), np.float32),
                      np.zeros(n2, np.float32), np.ones(n1, np.float32))
    return cache[key]


def qlinear_int16(x, packed, packed_residual, out=None, activation="none"):
    """A higher-precision linear from two int8 passes: x, then what int8 lost of it.

    y = qlinear(x) + qlinear(r) with r = x*input_scale - (q*sa + c), the
    quantization residual (|r| <= sa/2 per row, quantized on its own range):
    about 15-bit activations on the same kernels, deterministic, twice the
    cost of one int8 linear. ``packed_residual`` packs the same weights with
    no bias and no input scale. GELU, if any, applies to the sum.
    """
    out = qlinear(x, packed, out=out, activation="none")
    residual = _residual_rows(x, packed.input_scale, packed.kernels)
    second = getattr(_tls, "second_pass", None)
    if second is None or second.size < out.size:
        second = _tls.second_pass = np.empty(max(out.size, 1), np.float32)  # reused: no allocation per call
    out += qlinear(residual, packed_residual, out=second[:out.size].reshape(out.shape))
    if activation == "gelu":
        _shared(packed.kernels, "gelu_inplace")(out)
    elif activation != "none":
        raise InputError(f"activation must be one of {_ACTIVATIONS}, got {activation!r}")
    return out


def _residual_rows(x, input_scale, kernels=None):
    """x * input_scale minus its int8 quantization, in thread-local buffers reused across calls."""
    M, K = x.shape
    buf = getattr(_tls, "residual", None)
    if buf is None or buf[0].size < M * K or buf[1].size < 2 * M:
        buf = _tls.residual = (np.empty(max(M * K, 1), np.int8), np.empty(max(2 * M, 2), np.float32),
                               np.empty(max(M * K, 1), np.float32))
    residual = buf[2][:M * K].reshape(M, K)
    if _shared(kernels, "residual_all")(x, input_scale, buf[0][:M * K], buf[1][:2 * M].reshape(2, M), residual):
        raise InputError("x has NaN or Inf")
    return residual


def quantize_rows(x, input_scale=None):
    """Fast per-row quantization around the row centre: x (M, K) f32 -> q int8 (M, K), sa (M,), c (M,).

    x * input_scale ~= q * sa[:, None] + c[:, None] (see gemm_portable.quantize_row).
    """
    if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 2:
        raise InputError(f"x must be a 2-D float32 numpy array, got {getattr(x, 'dtype', type(x).__name__)} {getattr(x, 'shape', '')}")
    x = np.ascontiguousarray(x)
    M, K = x.shape
    q = np.empty((M, K), np.int8)
    rowq = np.zeros((2, M), np.float32)
    rowq[0] = 1
    in_scale = np.ones(K, np.float32) if input_scale is None else _check_vector("input_scale", input_scale, K)
    if M and K and _shared(None, "quantize_all")(x, q.reshape(-1), rowq, 0, K, in_scale):
        raise InputError("x contains NaN or Inf")
    return q, rowq[0].copy(), rowq[1].copy()


def _prepare_rows(q, packed):
    """int8 rows q (M, K) -> the path's activation scratch for ``_gemm_i32``."""
    isa = packed.isa
    M, K = q.shape
    mp = -(-M // isa.mr) * isa.mr
    xq = np.full((mp, packed.Kp), isa.shift, np.int16).astype(isa.scratch_dtype)
    xq[:M, :K] = (q.astype(np.int16) + isa.shift).astype(isa.scratch_dtype)
    out = _aligned_empty(xq.nbytes).view(isa.scratch_dtype)
    out[:] = xq.reshape(-1)
    return out


def _gemm_i32(xq, packed, out):
    """Pure int8 GEMM on prepared rows -> out (M, N) int32 (benchmarks, tests)."""
    _dynamic(getattr(packed.kernels, packed.isa.gemm_i32.name), xq, packed.w, packed.corr, out, packed.Kp,
             kernels=packed.kernels)
    return out
