"""ONNX Runtime's fused and quantized forms rewritten into the standard ops converters/onnx_source.py reads.

ONNX Runtime's transformer optimizer fuses a BERT into com.microsoft ops; ``quantize_dynamic`` after it
turns some into quantized twins, and ``quantize_static`` (QDQ format) puts QuantizeLinear/DequantizeLinear
pairs on activations. Each fused node is replaced by the standard subgraph it computes, in the shapes a
``torch.onnx`` export has (a linear's MatMul then its bias Add, a Split fused Q/K/V, LayerNormalization,
GELU in its erf or tanh form), so one structural reader maps every form; activation Q/DQ pairs are cut
out (we calibrate our own activation scales; weights keep their int8). The rewritten graph is only read,
never run: attention masks are dropped (our runtime masks padding itself).

  EmbedLayerNormalization(ids, types?, word, pos, type?, gamma, beta)  -> Gather x3, Add, LayerNormalization
  QEmbedLayerNormalization (int8 tables, gamma, beta)                   -> the same over DequantizeLinear
  Attention(x, W (K, 3H), b (3H,))                                      -> MatMul, Add, Split, heads, Softmax
  QAttention(xq, Wq, b, x scale, W scale, _, x zp, W zp)                -> MatMulInteger, Cast, Mul, then as above
  SkipLayerNormalization(x, skip, gamma, beta?, bias?)                  -> Add bias, Add skip, LayerNormalization
  BiasGelu(x, b) / Gelu(x)                                              -> Add, exact (erf) GELU
  FastGelu(x, b?)                                                       -> Add, tanh-approximated GELU
"""
from __future__ import annotations

import math

import numpy as np

from edgebert.errors import UnsupportedModel

MS = "com.microsoft"
# Attention attributes that change the math; any other value than the default is refused.
ATTENTION_DEFAULTS = {"unidirectional": 0, "do_rotary": 0, "past_present_share_buffer": 0}
SCALE_RTOL = 1e-6  # a float32 attribute against 1/sqrt(d) in float64
GELU_TANH_C = math.sqrt(2.0 / math.pi)  # 0.5 x (1 + tanh(c (x + 0.044715 x^3)))


class _Rewriter:
    def __init__(self, model, where: str):
        from onnx import helper, numpy_helper

        self.h, self.nh, self.where = helper, numpy_helper, where
        g = model.graph
        self.graph = g
        self.dims = {t.name: list(t.dims) for t in g.initializer}
        self.inits = set(self.dims)
        self.taken = self.inits | {i.name for i in g.input} | {o for n in g.node for o in n.output}
        self.count, self.new_inits = 0, []
        self.out: list = []  # the rewritten node list

    def name(self, stem: str) -> str:
        while True:
            self.count += 1
            n = f"{stem}__eb{self.count}"
            if n not in self.taken:
                self.taken.add(n)
                return n

    def const(self, value, stem: str = "const") -> str:
        n = self.name(stem)
        self.new_inits.append(self.nh.from_array(np.asarray(value), n))
        return n

    def op(self, op_type: str, inputs: list, out: str | None = None, n_out: int = 1, **attrs):
        outs = [out] if out else [self.name(op_type) for _ in range(n_out)]
        self.out.append(self.h.make_node(op_type, list(inputs), outs, name=self.name(op_type), **attrs))
        return outs[0] if n_out == 1 else outs

    def refuse(self, node, message: str):
        raise UnsupportedModel(f"{self.where} at node {node.name!r} ({node.domain}::{node.op_type}): {message}")


def _in(node, i: int) -> str | None:
    return node.input[i] if len(node.input) > i and node.input[i] else None


def _attrs(node) -> dict:
    from onnx import helper
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def rewrite(model, where: str):
    """``model`` with every com.microsoft node expanded and activation Q/DQ pairs removed (in place)."""
    r = _Rewriter(model, where)
    rename, drop = _activation_qdq(model)
    for node in model.graph.node:
        for k, name in enumerate(node.input):
            if name in rename:
                node.input[k] = rename[name]
        if node.domain == MS:
            EXPAND[node.op_type](r, node)
        elif node.output[0] not in drop:
            r.out.append(node)
    for o in model.graph.output:
        if o.name in rename:  # a graph output read through a Q/DQ pair keeps its name
            r.op("Identity", [rename[o.name]], o.name)
    del model.graph.node[:]
    model.graph.node.extend(r.out)
    model.graph.initializer.extend(r.new_inits)
    return model


def _activation_qdq(model) -> tuple[dict[str, str], set[str]]:
    """DequantizeLinear(QuantizeLinear(x)) on a computed tensor x: DQ output -> x, and the first outputs
    of the nodes dropped (each such DQ, and a QuantizeLinear once only dropped DQs read it)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    consts = {t.name for t in model.graph.initializer} | {n.output[0] for n in model.graph.node
                                                          if n.op_type == "Constant"}
    rename = {}
    for n in model.graph.node:
        q = producer.get(n.input[0]) if n.op_type == "DequantizeLinear" else None
        if q is not None and q.op_type == "QuantizeLinear" and q.input[0] not in consts:
            rename[n.output[0]] = q.input[0]
    drop = set(rename)
    for n in model.graph.node:
        users = consumers.get(n.output[0], []) if n.op_type == "QuantizeLinear" else []
        if users and all(c.output[0] in drop for c in users):
            drop.add(n.output[0])
    return rename, drop


# ---- expansions -----------------------------------------------------------------------------


def _embed(r: _Rewriter, node, quantized: bool = False) -> None:
    a = _attrs(node)
    ids, types, word, pos, typ, gamma, beta = (_in(node, i) for i in range(7))
    if quantized:  # tables, gamma and beta int8; scales at 8..12, zero points at 13..17
        word, pos, typ, gamma, beta = (None if t is None else (t, _in(node, 8 + j), _in(node, 13 + j))
                                       for j, t in enumerate((word, pos, typ, gamma, beta)))
        lookup = lambda t, i: r.op("DequantizeLinear", [r.op("Gather", [t[0], i]), t[1]] + ([t[2]] if t[2] else []))
        gamma, beta = (r.op("DequantizeLinear", [t[0], t[1]] + ([t[2]] if t[2] else [])) for t in (gamma, beta))
        position_ids = None
    else:
        lookup = lambda t, i: r.op("Gather", [t, i])
        position_ids = _in(node, 8)
    if ids is None or word is None or pos is None or gamma is None or beta is None:
        r.refuse(node, "needs input ids, word and position tables, gamma and beta")
    if position_ids is None:  # 0, 1, ..., T-1
        seq = r.op("Gather", [r.op("Shape", [ids]), r.const(np.int64(1))])
        position_ids = r.op("Range", [r.const(np.int64(0)), seq, r.const(np.int64(1))])
    x = r.op("Add", [lookup(word, ids), lookup(pos, position_ids)])
    if typ is not None and types is not None:
        x = r.op("Add", [x, lookup(typ, types)])
    r.op("LayerNormalization", [x, gamma, beta], node.output[0], axis=-1, epsilon=a.get("epsilon", 1e-12))
    if len(node.output) > 2 and node.output[2]:  # embedding_sum
        r.op("Identity", [x], node.output[2])


def _attention(r: _Rewriter, node, quantized: bool = False) -> None:
    a = _attrs(node)
    bad = {k: a[k] for k, v in ATTENTION_DEFAULTS.items() if a.get(k, v) != v}
    if bad or "num_heads" not in a:
        r.refuse(node, f"attention with {bad or 'no num_heads'} is not a BERT encoder's")
    if any(o for o in node.output[1:]) or (not quantized and (_in(node, 4) or _in(node, 5))):
        r.refuse(node, "attention with past/present state or an additive bias is not supported")
    nh = int(a["num_heads"])
    if quantized:  # (xq uint8, Wq int8, bias, x scale, W scale, mask, x zp, W zp): ORT's quantize_dynamic
        acc = r.op("MatMulInteger", [node.input[0], node.input[1], _in(node, 6) or "", _in(node, 7) or ""])
        y = r.op("Mul", [r.op("Cast", [acc], to=1), r.op("Mul", [node.input[3], node.input[4]])])
    else:
        y = r.op("MatMul", [node.input[0], node.input[1]])
    sizes = a.get("qkv_hidden_sizes")
    if sizes is not None and len(set(sizes)) != 1:
        r.refuse(node, f"unequal Q/K/V widths {list(sizes)}")
    if _in(node, 2):
        y = r.op("Add", [y, node.input[2]])
    q, k, v = r.op("Split", [y], n_out=3, axis=2)  # three equal parts of (B, T, 3H)
    heads = r.const(np.array([0, 0, nh, -1], np.int64))  # (B, T, nh, hd)
    q = r.op("Transpose", [r.op("Reshape", [q, heads])], perm=[0, 2, 1, 3])  # (B, nh, T, hd)
    k = r.op("Transpose", [r.op("Reshape", [k, heads])], perm=[0, 2, 3, 1])  # (B, nh, hd, T)
    v = r.op("Transpose", [r.op("Reshape", [v, heads])], perm=[0, 2, 1, 3])
    scores = r.op("MatMul", [q, k])
    if "scale" in a:  # our attention divides by sqrt(head width): only that scale maps
        dims = r.dims.get(node.input[1], [])
        expected = 1.0 / math.sqrt(dims[1] / 3 / nh) if len(dims) == 2 and dims[1] % (3 * nh) == 0 else None
        if expected is None or not math.isclose(a["scale"], expected, rel_tol=SCALE_RTOL):
            r.refuse(node, f"attention scale {a['scale']} is not 1/sqrt(head width)"
                     + (f" ({expected:.7g})" if expected else " (the packed weight's shape is unknown)"))
    hd = r.op("Cast", [r.op("Gather", [r.op("Shape", [q]), r.const(np.int64(3))])], to=1)
    scores = r.op("Div", [scores, r.op("Sqrt", [hd])])
    ctx = r.op("MatMul", [r.op("Softmax", [scores], axis=-1), v])
    r.op("Reshape", [r.op("Transpose", [ctx], perm=[0, 2, 1, 3]), r.const(np.array([0, 0, -1], np.int64))],
         node.output[0])


def _skip_norm(r: _Rewriter, node) -> None:
    a = _attrs(node)
    x, skip, gamma, beta, bias = (_in(node, i) for i in range(5))
    if bias is not None:
        x = r.op("Add", [x, bias])
    s = r.op("Add", [x, skip])
    if beta is None:
        beta = r.op("Sub", [gamma, gamma])  # zeros of gamma's shape
    r.op("LayerNormalization", [s, gamma, beta], node.output[0], axis=-1, epsilon=a.get("epsilon", 1e-12))
    if len(node.output) > 3 and node.output[3]:  # input + skip + bias
        r.op("Identity", [s], node.output[3])
    if any(o for o in node.output[1:3]):
        r.refuse(node, "the mean / inverse standard deviation outputs are not supported")


def _gelu(r: _Rewriter, node, tanh: bool = False) -> None:
    y = node.input[0]
    if _in(node, 1):
        y = r.op("Add", [y, node.input[1]])
    half = r.op("Mul", [y, r.const(np.float32(0.5))])
    if tanh:  # 0.5 y (1 + tanh(c (y + 0.044715 y^3)))
        cube = r.op("Mul", [r.op("Mul", [y, y]), y])
        inner = r.op("Add", [y, r.op("Mul", [cube, r.const(np.float32(0.044715))])])
        t = r.op("Tanh", [r.op("Mul", [inner, r.const(np.float32(GELU_TANH_C))])])
    else:  # 0.5 y (1 + erf(y / sqrt 2))
        t = r.op("Erf", [r.op("Div", [y, r.const(np.float32(math.sqrt(2.0)))])])
    r.op("Mul", [half, r.op("Add", [t, r.const(np.float32(1.0))])], node.output[0])


EXPAND = {
    "EmbedLayerNormalization": _embed,
    "QEmbedLayerNormalization": lambda r, n: _embed(r, n, quantized=True),
    "Attention": _attention,
    "QAttention": lambda r, n: _attention(r, n, quantized=True),
    "SkipLayerNormalization": _skip_norm,
    "BiasGelu": _gelu,
    "Gelu": _gelu,
    "FastGelu": lambda r, n: _gelu(r, n, tanh=True),
}
