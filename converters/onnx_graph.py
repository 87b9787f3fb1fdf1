"""An ONNX graph read by structure: constants, producers, consumers, and the patterns a BERT export
is made of (a linear layer, a LayerNorm, GELU), whatever the exporter named its tensors.

The model is read with the ``onnx`` package (never a hand-written protobuf parser), checked with
``onnx.checker`` and shape-inferred; external data must lie inside the model's folder.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgebert.errors import InvalidModelFile, UnsupportedModel

MAX_ONNX_BYTES = 4 * 2**30  # a BERT-large int8/fp32 export is ~1.3 GB; larger is refused before reading
# How a file stores int8 weights (edgebert info shows these; the record's label is at most 100 characters).
FORMS = {"MatMulInteger": "DynamicQuantizeLinear + MatMulInteger", "DequantizeLinear": "QDQ",
         "Mul": "weight-only Cast + Mul", "export": "edgebert export"}
MAX_EPS = 1.0  # a LayerNorm epsilon at or above this is not one (BERTs use 1e-12 .. 1e-5)
SKELETON_BYTES = 1 << 16  # initializers larger than this are only shapes to shape inference
INT_STORED = (np.int8, np.uint8, np.int32)  # dequantized constants (int32: QDQ biases); weights keep only int8
# Ops that only move or reshape data (or compute shapes) on the way between two patterns.
PASS_THROUGH = ("Identity", "Cast", "Reshape", "Transpose", "Unsqueeze", "Squeeze", "Dropout")


def _onnx():
    try:
        import onnx
    except ImportError:
        raise UnsupportedModel("reading ONNX files needs the onnx package: pip install 'edgebert[onnx]'") from None
    return onnx


def read_onnx(path: Path):
    """The checked, shape-inferred ModelProto; external data only from inside the model's folder."""
    onnx = _onnx()
    from onnx.external_data_helper import load_external_data_for_model, uses_external_data

    if not path.is_file():
        raise UnsupportedModel(f"{path}: no such ONNX file")
    if path.stat().st_size > MAX_ONNX_BYTES:
        raise UnsupportedModel(f"{path}: {path.stat().st_size} bytes is larger than {MAX_ONNX_BYTES}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # the protobuf decoder raises its own types
        raise InvalidModelFile(f"{path}: not a readable ONNX model ({e})") from None
    from .source import inside
    for tensor in model.graph.initializer:
        if uses_external_data(tensor):
            where = {e.key: e.value for e in tensor.external_data}.get("location", "")
            inside(path.parent, where)  # absolute, '..' or a symlink out of the folder: refused
    load_external_data_for_model(model, str(path.parent))
    from .onnx_checks import check_structure
    from .onnx_fused import rewrite
    check_structure(model, str(path))  # opsets, ops, domains, order: InvalidModelFile naming the node
    try:
        external = any(uses_external_data(t) for t in model.graph.initializer)
        onnx.checker.check_model(model if external else str(path))  # by path: no 90 MB re-serialisation
        _infer_shapes(model)
    except Exception as e:
        raise InvalidModelFile(f"{path}: the ONNX checker refuses it ({e})") from None
    return rewrite(model, str(path))  # ONNX Runtime's fused ops and activation Q/DQ pairs: standard ops


def _infer_shapes(model) -> None:
    """ONNX shape inference (with data propagation) into ``model.graph.value_info``, run on a skeleton
    whose large initializers are typed graph inputs: it needs their shapes, not their values (the values
    that compute shapes are small), and skips serialising the weights twice (1.3 s -> 0.1 s for MiniLM)."""
    from onnx import helper, shape_inference

    g = model.graph
    big = [t for t in g.initializer if len(t.raw_data) > SKELETON_BYTES]
    big_names = {t.name for t in big}
    have = {i.name for i in g.input}
    inputs = list(g.input) + [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                              for t in big if t.name not in have]
    skeleton = helper.make_model(
        helper.make_graph(list(g.node), g.name, inputs, list(g.output),
                          initializer=[t for t in g.initializer if t.name not in big_names]),
        opset_imports=list(model.opset_import))
    skeleton.ir_version = max(model.ir_version, 4)  # initializers need not be inputs from IR 4 on
    inferred = shape_inference.infer_shapes(skeleton, data_prop=True, strict_mode=False)
    del g.value_info[:]
    g.value_info.extend(inferred.graph.value_info)


@dataclass
class Linear:
    """``y = x @ weight.T + bias`` found in the graph; ``q``/``scale`` when the file stores int8."""

    node: object  # the MatMul / Gemm / MatMulInteger
    x: str  # its float input (before DynamicQuantizeLinear for int8)
    out: str  # after the bias
    weight: np.ndarray  # (out, in) float32 (dequantized for int8)
    bias: np.ndarray | None
    q: np.ndarray | None = None  # (out, in) int8 as stored, rows = output channels
    scale: np.ndarray | None = None  # (out,) per output channel (a per-tensor scale broadcast)
    zero_point: np.ndarray | None = None  # (out,)
    input_scale: np.ndarray | None = None  # (in,) SmoothQuant: x * input_scale meets q (our export's form)
    outliers: tuple | None = None  # (idx (k,) int32, columns (out, k) float32): our export's float32 channels
    outlier_mask: np.ndarray | None = None  # (in,) 0/1: the mask our export's quantizer input carries
    int8: str = ""  # how the file stores the weight as int8 (FORMS), "" for float; q None: requantized


@dataclass
class Norm:
    x: str
    out: str
    gamma: np.ndarray
    beta: np.ndarray
    eps: float
    node: object  # the LayerNormalization, or the decomposed pattern's first ReduceMean


class Graph:
    def __init__(self, model, where: str):
        from onnx import numpy_helper

        self.where, g = where, model.graph
        self.producer_name = model.producer_name
        self.props = {p.key: p.value for p in model.metadata_props}
        self.nodes = list(g.node)
        self.index = {id(n): i for i, n in enumerate(self.nodes)}
        self.consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        self.producer, self.consumers, self.folded = {}, defaultdict(list), {}
        for n in self.nodes:
            if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
                self.consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
            for o in n.output:
                self.producer[o] = n
            for i in n.input:
                self.consumers[i].append(n)
        self.inputs = [i.name for i in g.input if i.name not in self.consts]
        self.outputs = [o.name for o in g.output]
        self.shapes = {v.name: [d.dim_value if d.HasField("dim_value") else None
                                for d in v.type.tensor_type.shape.dim]
                       for v in list(g.value_info) + list(g.output) if v.type.HasField("tensor_type")}

    def refuse(self, message: str, node=None):
        at = f" at node {node.name!r} ({node.op_type})" if node is not None else ""
        raise UnsupportedModel(f"{self.where}{at}: {message}")

    def const(self, name: str) -> np.ndarray | None:
        """The constant value of ``name`` through Identity, Cast and Transpose, else None."""
        if name in self.consts:
            return self.consts[name]
        if name not in self.folded:
            try:
                self.folded[name] = self._fold(name)
            except (ValueError, TypeError, IndexError) as e:  # a perm, a cast or shapes that do not fit
                self.refuse(f"cannot compute the constant {name!r} ({e})", self.producer.get(name))
        return self.folded[name]

    def _fold(self, name: str) -> np.ndarray | None:
        n = self.producer.get(name)
        if n is None or n.op_type not in ("Identity", "Cast", "Transpose", "DequantizeLinear", "Mul", "QuantizeLinear"):
            return None
        if n.op_type in ("DequantizeLinear", "Mul"):  # int8 weights stored with their scales
            src = self.int8_weight(name)
            return None if src is None else src[0]
        if n.op_type == "QuantizeLinear":  # a constant quantized in the graph (QDQ on a Constant)
            return self._quantize(n)
        v = self.const(n.input[0])
        if v is None:
            return None
        if n.op_type == "Transpose":
            perm = attr(n, "perm")
            return np.transpose(v, perm) if perm is not None else v.T
        if n.op_type == "Cast":
            from onnx import helper
            return v.astype(helper.tensor_dtype_to_np_dtype(attr(n, "to")))
        return v

    def _quantize(self, n) -> np.ndarray | None:
        x, scale = self.const(n.input[0]), self.const(n.input[1])
        zp = self.const(n.input[2]) if len(n.input) > 2 and n.input[2] else np.zeros((), np.uint8)
        if x is None or scale is None or zp is None or scale.size != 1 or zp.dtype not in (np.int8, np.uint8):
            return None
        info = np.iinfo(zp.dtype)
        return np.clip(np.rint(x / scale) + zp.astype(np.float64), info.min, info.max).astype(zp.dtype)

    def int8_weight(self, name: str):
        """(float32 value, q, scale, zero point, axis) of a constant stored as int8 with its scale:
        DequantizeLinear(q, scale[, zero point], axis) or Mul(Cast(q), scale); scale and zero point
        reshaped to broadcast against q. None when ``name`` is not such a constant."""
        n = self.producer.get(name)
        if n is None:
            return None
        if n.op_type == "DequantizeLinear":
            q, scale = self.const(n.input[0]), self.const(n.input[1])
            zp = self.const(n.input[2]) if len(n.input) > 2 and n.input[2] else np.zeros((), np.int32)
            axis = attr(n, "axis", 1)
        elif n.op_type == "Mul":
            cast = next((self.producer.get(i) for i in n.input if self.producer.get(i) is not None
                         and self.producer[i].op_type == "Cast"), None)
            if cast is None:
                return None
            q = self.const(cast.input[0])
            scale, zp = self.const(n.input[1] if n.input[0] == cast.output[0] else n.input[0]), np.zeros((), np.int32)
            axis = None
        else:
            return None
        if q is None or scale is None or zp is None or q.dtype not in INT_STORED or q.ndim > 2:
            return None
        if axis is not None and scale.ndim == 1 and scale.size > 1:  # per-axis DequantizeLinear
            axis = axis % q.ndim
            scale, zp = (np.reshape(v, [-1 if d == axis else 1 for d in range(q.ndim)]) if np.ndim(v) else v
                         for v in (scale, zp))
        try:
            value = ((q.astype(np.float32) - np.asarray(zp, np.float32)) * np.asarray(scale, np.float32))
        except ValueError:
            self.refuse(f"int8 constant {name!r}: scale {np.shape(scale)} does not fit the values {q.shape}", n)
        return value.astype(np.float32), q, np.asarray(scale, np.float32), np.asarray(zp), n

    def only_consumer(self, name: str, op: str | tuple):
        users = self.consumers.get(name, [])
        ops = (op,) if isinstance(op, str) else op
        return users[0] if len(users) == 1 and users[0].op_type in ops else None

    def ancestors(self, name: str, stop: set[str]) -> tuple[set[str], list]:
        """Names in ``stop`` reached walking up from ``name`` (not through Shape: shapes carry no
        values), and the nodes walked."""
        seen, found, walked, todo = set(), set(), [], [name]
        while todo:
            t = todo.pop()
            if t in seen:
                continue
            seen.add(t)
            if t in stop:
                found.add(t)
                continue
            n = self.producer.get(t)
            if n is None or n.op_type in ("Shape", "Size", "Constant") or self.const(t) is not None:
                continue
            walked.append(n)
            todo.extend(i for i in n.input if i)
        return found, walked

    # ---- patterns --------------------------------------------------------------------

    def linear_at(self, n) -> Linear | None:
        """A MatMul/Gemm with a constant weight (pre-transposed or not), or ONNX Runtime's dynamic
        int8 form: DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul(scale)."""
        if n.op_type == "MatMul":
            w = self.const(n.input[1])
            if w is None or w.ndim != 2 or self._picks_channels(n.input[0]):
                return None
            lin = Linear(n, n.input[0], n.output[0], np.asarray(w, np.float32).T.copy(), None)
            return self._with_bias(self._int8_source(lin, n.input[1], out_axis=1))
        if n.op_type == "Gemm":
            w = self.const(n.input[1])
            if w is None or attr(n, "transA", 0) or attr(n, "alpha", 1.0) != 1.0 or attr(n, "beta", 1.0) != 1.0:
                return None
            out_axis = 0 if attr(n, "transB", 0) else 1
            w = np.asarray(w if out_axis == 0 else w.T, np.float32)
            b = self.const(n.input[2]) if len(n.input) > 2 and n.input[2] else None
            lin = Linear(n, n.input[0], n.output[0], w.copy(), None if b is None else np.asarray(b, np.float32))
            return self._int8_source(lin, n.input[1], out_axis)
        if n.op_type == "MatMulInteger":
            return self._integer_linear(n)
        return None

    def _picks_channels(self, name: str) -> bool:
        """``name`` is a Gather of constant channels from a computed tensor: our export's outlier branch
        (part of the linear it is added to, read by ``onnx_own.outlier_branch``), not a layer of its own.
        An embedding lookup gathers the other way round (a constant table, computed ids)."""
        g = self.producer.get(name)
        return (g is not None and g.op_type == "Gather" and self.const(g.input[0]) is None
                and self.const(g.input[1]) is not None and attr(g, "axis", 0) not in (0,))

    def _int8_source(self, lin: Linear, name: str, out_axis: int) -> Linear:
        """Marks a weight the file stores as int8 (QDQ or weight-only); keeps q and a per-output-channel
        scale when the scale varies only along the output axis (per channel or per tensor)."""
        src = self.int8_weight(name)
        if src is None:
            return lin
        _, q, scale, zp, node = src
        if q.dtype == np.int32:
            return lin
        lin.int8 = FORMS[node.op_type]
        N = lin.weight.shape[0]
        per_out = [1 if d != out_axis else N for d in range(2)]
        if all(np.size(v) == 1 or list(np.shape(v)) in (per_out, [N] if out_axis == 1 else None) for v in (scale, zp)):
            rows = q if out_axis == 0 else q.T  # (N, K)
            lin.q, lin.scale, lin.zero_point = (rows.copy(), *(np.broadcast_to(np.asarray(v).reshape(-1), (N,)).copy()
                                                              for v in (scale, zp)))
            if q.dtype == np.uint8:  # unsigned: kept only if it were symmetric, which uint8 is not
                lin.q = None
        return lin

    def _with_bias(self, lin: Linear) -> Linear:
        from .onnx_own import outlier_branch

        found = outlier_branch(self, lin)
        if found is not None:  # our export's outlier channels: their own float32 columns, added before the bias
            idx, cols, add = found
            lin.outliers, lin.out = (idx, cols), add.output[0]
            lin.weight = lin.weight.copy()
            lin.weight[:, idx] = cols
        elif lin.outlier_mask is not None:
            self.refuse("edgebert's per-token int8 linear masks channels but has no outlier-channel branch", lin.node)
        add = self.only_consumer(lin.out, "Add")
        if add is not None:
            other = add.input[1] if add.input[0] == lin.out else add.input[0]
            b = self.const(other)
            if b is not None and b.shape == (lin.weight.shape[0],):
                lin.bias, lin.out = np.asarray(b, np.float32), add.output[0]
        return lin

    def _integer_linear(self, n) -> Linear | None:
        from .onnx_own import per_token_linear
        own = per_token_linear(self, n)  # our export's form
        if own is not None:
            return self._with_bias(own)
        dq = self.producer.get(n.input[0])
        q = self.const(n.input[1])
        if dq is None or dq.op_type != "DynamicQuantizeLinear" or q is None or q.ndim != 2:
            self.refuse("a MatMulInteger must take DynamicQuantizeLinear activations and constant weights", n)
        K, N = q.shape
        zp = self.const(n.input[3]) if len(n.input) > 3 and n.input[3] else np.zeros((), q.dtype)
        if zp is None:
            self.refuse("the weight zero point of a MatMulInteger must be a constant", n)
        cast = self.only_consumer(n.output[0], "Cast")
        mul = self.only_consumer(cast.output[0], "Mul") if cast is not None else None
        if mul is None:
            self.refuse("expected MatMulInteger -> Cast -> Mul(scale)", n)
        scales = self.producer.get(mul.input[1] if mul.input[0] == cast.output[0] else mul.input[0])
        if scales is None or scales.op_type != "Mul" or dq.output[1] not in scales.input:
            self.refuse("expected the output scale to be activation scale * weight scale", mul)
        w_scale = self.const(scales.input[1] if scales.input[0] == dq.output[1] else scales.input[0])
        if w_scale is None or w_scale.size not in (1, N) or (zp.size not in (1, N)):
            self.refuse("weight scale and zero point must be per tensor or per output column", scales)
        scale = np.broadcast_to(np.asarray(w_scale, np.float32).reshape(-1), (N,)).copy()
        zero = np.broadcast_to(np.asarray(zp, np.int32).reshape(-1), (N,)).copy()
        weight = ((q.astype(np.float32) - zero[None, :]) * scale[None, :]).T.copy()  # (N, K)
        lin = Linear(n, dq.input[0], mul.output[0], weight, None, q.T.copy(), scale, zero, int8=FORMS[n.op_type])
        return self._with_bias(lin)

    def norm_at(self, n) -> Norm | None:
        """A fused LayerNormalization over the last axis, or its decomposed form
        (ReduceMean, Sub, Pow, ReduceMean, Add eps, Sqrt, Div, Mul gamma, Add beta)."""
        if n.op_type == "LayerNormalization":
            gamma, beta = self.const(n.input[1]), self.const(n.input[2]) if len(n.input) > 2 else None
            if attr(n, "axis", -1) != -1 or gamma is None or beta is None:
                self.refuse("LayerNormalization must normalise the last axis with constant scale and bias", n)
            return Norm(n.input[0], n.output[0], *_f32(gamma, beta), self._eps(attr(n, "epsilon", 1e-5), n), n)
        if n.op_type != "ReduceMean":
            return None
        x = n.input[0]
        sub = next((c for c in self.consumers[n.output[0]] if c.op_type == "Sub" and c.input[0] == x), None)
        if sub is None:
            return None
        d = sub.output[0]
        div = next((c for c in self.consumers[d] if c.op_type == "Div" and c.input[0] == d), None)
        sqrt = self.producer.get(div.input[1]) if div is not None else None
        add = self.producer.get(sqrt.input[0]) if sqrt is not None and sqrt.op_type == "Sqrt" else None
        if add is None or add.op_type != "Add":
            self.refuse("a ReduceMean/Sub that is not a LayerNorm (expected Div by Sqrt(var + eps))", n)
        eps = self.const(add.input[1])
        mul = self.only_consumer(div.output[0], "Mul")
        bias = self.only_consumer(mul.output[0], "Add") if mul is not None else None
        if eps is None or bias is None:
            self.refuse("decomposed LayerNorm without a constant eps, gamma and beta", n)
        gamma = self.const(mul.input[1] if mul.input[0] == div.output[0] else mul.input[0])
        beta = self.const(bias.input[1] if bias.input[0] == mul.output[0] else bias.input[0])
        if gamma is None or beta is None:
            self.refuse("decomposed LayerNorm without constant gamma and beta", mul)
        return Norm(x, bias.output[0], *_f32(gamma, beta), self._eps(eps, n), n)

    def _eps(self, value, node) -> float:
        eps = _eps(value)
        if not (np.isfinite(eps) and 0 < eps < MAX_EPS):
            self.refuse(f"LayerNorm epsilon {eps} is not a small positive number", node)
        return eps

    def gelu(self, start: str, end: str, where) -> str:
        """The activation between ``start`` and ``end``: "gelu" (one Gelu node or the erf form) or
        "gelu_tanh" (Gelu(approximate="tanh") or 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))))."""
        _, walked = self.ancestors(end, {start})
        ops = sorted({n.op_type for n in walked})
        kind = {"none": "gelu", "tanh": "gelu_tanh"}.get(_text(attr(walked[0], "approximate", b"none"))) \
            if ops == ["Gelu"] and len(walked) == 1 else None
        if kind:
            return kind
        if "Erf" in ops and set(ops) <= {"Div", "Mul", "Add", "Erf"}:
            return "gelu"
        if "Tanh" in ops and set(ops) <= {"Mul", "Add", "Pow", "Tanh", "Div", "Sqrt"}:
            consts = [self.const(i) for n in walked for i in n.input]
            if any(c is not None and c.size == 1 and abs(float(c.reshape(-1)[0]) - 0.044715) < 1e-6 for c in consts):
                return "gelu_tanh"
        self.refuse(f"the feed-forward activation is made of {ops}; supported: GELU (Gelu, the erf form or the "
                    "tanh approximation)", walked[0] if walked else where)


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def attr(node, name: str, default=None):
    from onnx import helper
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _eps(value) -> float:
    """A float32 epsilon as the shortest decimal that rounds to it (1e-12, not 9.99999996e-13): the
    value the source config wrote, and the one LayerNorm computes with either way."""
    return float(str(np.float32(np.asarray(value).reshape(-1)[0])))


def _f32(*arrays) -> list[np.ndarray]:
    return [np.asarray(a, np.float32).reshape(-1).copy() for a in arrays]
