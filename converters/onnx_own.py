"""Our own ONNX export read back (edgebert/onnx_export.py): int8 linears whose activations are quantized
per token around each row's centre, and int8 embedding rows with a scale per row. Their int8 values
and scales are ours already (symmetric, per output channel / per row), so they are kept exactly.

  rows = Reshape(x, (-1, K)); c, sa from ReduceMax/ReduceMin(rows); q = Cast(Clip(Round((rows - c) / sa)))
  y = Reshape(Cast(MatMulInteger(q, W^T)) * (sa * scale) + c * wsum, (..., N))    wsum = scale * rowsum(W)
  embedding: Cast(Gather(q_table, ids)) * Unsqueeze(Gather(row_scale, ids), -1)
A SmoothQuant layer (x * input_scale first) keeps its int8 W * s and its input scale; the weight the
spec holds is the layer's own, (W * s) * input_scale.
"""
from __future__ import annotations

import numpy as np

INT8 = 3  # onnx.TensorProto.INT8, the Cast before MatMulInteger
QUANTIZER_OPS = {"Cast", "Clip", "Round", "Div", "Sub", "Mul", "Add", "Max", "ReduceMax", "ReduceMin", "Reshape"}


def per_token_linear(g, n):
    """The Linear of one exported int8 matmul ``n`` (MatMulInteger), or None when it is not our form."""
    from .onnx_graph import FORMS, Linear

    cast_in = g.producer.get(n.input[0])
    w = g.const(n.input[1])
    if cast_in is None or cast_in.op_type != "Cast" or w is None or w.dtype != np.int8 or w.ndim != 2:
        return None
    from .onnx_graph import attr
    if attr(cast_in, "to") != INT8 or any(i for i in n.input[2:]):
        return None
    K, N = w.shape
    chain = [cast_in]  # Cast <- Clip <- Round <- Div(Sub(rows, centre), row scale)
    for op in ("Clip", "Round", "Div", "Sub"):
        m = g.producer.get(chain[-1].input[0])
        chain.append(m if m is not None and m.op_type == op else None)
        if chain[-1] is None:
            g.refuse("an int8 MatMulInteger input that is neither DynamicQuantizeLinear nor edgebert's "
                     "per-token quantizer", n)
    rows = g.producer.get(chain[-1].input[0])
    found, walked = g.ancestors(n.input[0], {chain[-1].input[0]})
    if rows is None or rows.op_type != "Reshape" or {m.op_type for m in walked} - QUANTIZER_OPS:
        g.refuse("an int8 MatMulInteger input quantized by something else than edgebert's per-token quantizer", n)
    x = rows.input[0]
    masked = g.producer.get(x)  # outlier channels: x * a 0/1 mask before the quantizer (their own branch below)
    mask = next((g.const(i) for i in masked.input if g.const(i) is not None), None) \
        if masked is not None and masked.op_type == "Mul" else None
    if mask is not None and mask.shape == (K,) and np.isin(mask, (0, 1)).all() and not mask.all():
        x = next(i for i in masked.input if g.const(i) is None)
    else:
        mask = None
    cast = g.only_consumer(n.output[0], "Cast")
    mul = g.only_consumer(cast.output[0], "Mul") if cast is not None else None
    add = g.only_consumer(mul.output[0], "Add") if mul is not None else None
    out = g.only_consumer(add.output[0], "Reshape") if add is not None else None
    if out is None:
        g.refuse("expected edgebert's MatMulInteger -> Cast -> Mul(row scale x weight scales) -> Add(centre x "
                 "weight sums) -> Reshape", n)
    scale = _const_factor(g, mul, cast.output[0])
    wsum = _const_factor(g, add, mul.output[0])
    if scale is None or wsum is None or scale.size != N or wsum.size != N:
        g.refuse("edgebert's per-token int8 linear without constant weight scales and sums", mul)
    scale = scale.reshape(-1).astype(np.float32)
    q = np.ascontiguousarray(w.T)  # (N, K)
    if not np.array_equal(wsum.reshape(-1), (scale * q.astype(np.int64).sum(axis=1)).astype(np.float32)):
        g.refuse("the weight sums do not match the int8 weights (not edgebert's per-token form)", add)
    weight = q.astype(np.float32) * scale[:, None]
    lin = Linear(n, x, out.output[0], weight, None, q, scale.copy(), np.zeros(N, np.int32), int8=FORMS["export"])
    smooth = g.producer.get(x)
    s = next((g.const(i) for i in smooth.input if g.const(i) is not None), None) \
        if smooth is not None and smooth.op_type == "Mul" else None
    if s is not None and s.shape == (K,):  # SmoothQuant: x * input_scale, W * s stored; both kept
        lin.x = next(i for i in smooth.input if g.const(i) is None)
        lin.input_scale = s.astype(np.float32)
        lin.weight = weight * lin.input_scale[None, :]
    lin.outlier_mask = mask
    return lin


def outlier_branch(g, lin):
    """Our export's outlier channels after a linear ``lin`` (before its bias): Add(lin.out,
    MatMul(Gather(x, idx, axis=-1), outlier_weight.T)). Returns (idx (k,) int32, columns (N, k) float32,
    the Add) or None. The channels' int8 weight columns are zero, and a per-token linear masks them."""
    add = g.only_consumer(lin.out, "Add")
    other = None if add is None else g.producer.get(add.input[1] if add.input[0] == lin.out else add.input[0])
    if other is None or other.op_type != "MatMul":
        return None
    gather, cols_t = g.producer.get(other.input[0]), g.const(other.input[1])
    idx = g.const(gather.input[1]) if gather is not None and gather.op_type == "Gather" else None
    N, K = lin.weight.shape
    if idx is None or cols_t is None or idx.ndim != 1 or cols_t.shape != (idx.size, N) or gather.input[0] != lin.x:
        return None
    from .onnx_graph import attr

    from edgebert.ops import MAX_OUTLIERS

    if (attr(gather, "axis", 0) not in (-1, 2) or not 0 < idx.size <= MAX_OUTLIERS or idx.min() < 0
            or idx.max() >= K or np.any(np.diff(idx) <= 0)):
        g.refuse(f"an outlier-channel Gather that is not 1 to {MAX_OUTLIERS} strictly increasing channels of the "
                 "linear's input", gather)
    idx = idx.astype(np.int32)
    mask = lin.outlier_mask
    if mask is not None and not np.array_equal(np.flatnonzero(mask == 0), idx):
        g.refuse("the outlier channels' mask and their Gather name different channels", gather)
    return idx, np.ascontiguousarray(np.asarray(cols_t, np.float32).T), add


def _const_factor(g, node, other: str | None):
    """The constant part of Mul/Add ``node``: a constant input, or the constant input of the Mul that
    produces its input that is not ``other`` (Mul(sa, scale), Mul(c, wsum))."""
    for i in node.input:
        if i == other:
            continue
        v = g.const(i)
        if v is not None:
            return v
        m = g.producer.get(i)
        if m is not None and m.op_type == "Mul":
            vs = [g.const(j) for j in m.input]
            found = [v for v in vs if v is not None]
            if len(found) == 1:
                return found[0]
    return None


def row_int8_table(g, n):
    """(q table, per-row scale, output name) of an int8 embedding lookup Gather ``n`` in our export's form:
    Cast(Gather(q, ids)) * Unsqueeze(Gather(scale, ids), -1); None when not that form."""
    q = g.const(n.input[0])
    cast = g.only_consumer(n.output[0], "Cast")
    mul = g.only_consumer(cast.output[0], "Mul") if cast is not None else None
    if q is None or q.dtype != np.int8 or mul is None:
        return None
    unsq = g.producer.get(mul.input[1] if mul.input[0] == cast.output[0] else mul.input[0])
    gather = g.producer.get(unsq.input[0]) if unsq is not None and unsq.op_type == "Unsqueeze" else None
    scale = g.const(gather.input[0]) if gather is not None and gather.op_type == "Gather" else None
    if scale is None or scale.shape != (q.shape[0],) or gather.input[1] != n.input[1]:
        return None
    return q, scale.astype(np.float32), mul.output[0]


def source_activations(g, spec) -> dict[str, str]:
    """Our export's record of the linears that ran with int16/float32 activations (edgebert/onnx_export.py's
    model metadata), checked: {linear prefix of the spec: "int16" | "float32"}; {} for other producers."""
    import json

    from edgebert import names
    from edgebert.errors import InvalidModelFile

    from .calibrate import KEEP_MODES
    from edgebert.onnx_export import ACTIVATIONS_KEY

    raw = g.props.get(ACTIVATIONS_KEY)
    if g.producer_name != "edgebert" or raw is None:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    ok = isinstance(value, dict) and all(isinstance(k, str) and k + names.WEIGHT in spec.slots and v in KEEP_MODES
                                         for k, v in value.items())
    if not ok:
        raise InvalidModelFile(f"{g.where}: metadata {ACTIVATIONS_KEY} must map this model's linear layers to one "
                               f"of {', '.join(KEEP_MODES)}, got {raw[:200]!r}")
    return value
