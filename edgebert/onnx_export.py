"""``edgebert export model.edgebert -o model.onnx``: our graph as a standard ONNX graph (opset 17).

Inputs ``input_ids``, ``attention_mask`` and ``token_type_ids`` (when the model has token types), all
(B, T) int64 with right padding; outputs are the file's graph outputs under the same names
(``last_hidden_state`` (B, T, H), a head's ``logits``...). int8 linears keep our int8 weights (stored
(K, N)) and per-output-channel scales unchanged and quantize their activations per token exactly as our
runtime does (runtime/kernels/gemm.py: int8 around each row's centre), with standard ops: ReduceMax/Min,
Round, Clip, Cast -> MatMulInteger (int8 x int8) -> Cast, Mul(row scale * weight scales), Add(centre *
weight sums). ONNX Runtime's own DynamicQuantizeLinear (one uint8 scale per call) was measured worse
on MiniLM (mean token cosine 0.979 against ours). Linears our file runs with higher-precision
activations (int16/float32) run in float on their int8 weights times their scales (Cast, Mul).
int8 embedding rows are looked up as int8 and scaled by their row's scale. Every op of the format is
lowered, so every architecture exports: the attention-side ops (windowed, relative, disentangled,
rotary, neighbours) are in edgebert/onnx_attention.py. The tokenizer
(tokenizer.json, tokenizer_config.json) and the pooling (sentence-transformers' modules.json,
1_Pooling/config.json, sentence_bert_config.json) are written beside the .onnx file.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from . import names
from .errors import UnsupportedModel
from .onnx_attention import LOWER as ATTENTION_LOWER
from .onnx_attention import MASKED

OPSET = 17  # LayerNormalization
ACTIVATIONS_KEY = "edgebert.activations"  # model metadata: linear prefix -> "int16" / "float32"


def add_export_parser(sub) -> None:
    e = sub.add_parser("export", help="write a .edgebert file as an ONNX graph (runs in ONNX Runtime)")
    e.add_argument("file", help="the .edgebert file")
    e.add_argument("-o", "--output", required=True, help="output .onnx file (tokenizer and pooling beside it)")
    e.set_defaults(func=lambda args: _command(args))


def _command(args) -> int:
    counts = export_onnx(args.file, args.output)
    print(f"wrote {args.output}: {counts['nodes']} nodes, {counts['int8_linears']} int8 linears (MatMulInteger), "
          f"{counts['float_linears']} float")
    return 0


def export_onnx(src, out) -> dict:
    """Write ``out`` (.onnx) and its tokenizer/pooling files beside it; return what was written."""
    try:
        import onnx
    except ImportError:
        raise UnsupportedModel("exporting to ONNX needs the onnx package: pip install 'edgebert[onnx]'") from None
    from .description import describe
    from .format import read_model
    from .ops import per_sequence_values

    model_file = read_model(src)
    desc = describe(model_file)
    b = _Builder({k: np.asarray(v) for k, v in model_file.tensors.items()}, desc.widths,
                 desc.config["max_position_embeddings"] - desc.config.get("position_offset", 0))
    for node in desc.graph["nodes"]:
        lower = LOWER.get(node["op"])
        if lower is None:
            raise UnsupportedModel(f"{src}: op {node['op']!r} cannot be exported to ONNX yet; exported: "
                                   f"{', '.join(sorted(LOWER))}")
        lower(b, node)
    per_seq = per_sequence_values(desc.graph["nodes"])
    outputs = [onnx.helper.make_tensor_value_info(
        n, onnx.TensorProto.FLOAT, ["batch", desc.widths[n]] if n in per_seq else ["batch", "seq", desc.widths[n]])
        for n in desc.graph["outputs"]]
    graph = onnx.helper.make_graph(
        b.nodes, "edgebert", [onnx.helper.make_tensor_value_info(n, onnx.TensorProto.INT64, ["batch", "seq"])
                              for n in b.inputs], outputs,
        initializer=[onnx.numpy_helper.from_array(v, k) for k, v in b.consts.items()])
    proto = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", OPSET)],
                                   producer_name="edgebert")
    proto.ir_version = 8  # readable by ONNX Runtime releases since 1.11
    higher = {n["params"]["linear"]: n["attrs"]["activations"] for n in desc.graph["nodes"]
              if n["op"] == "linear" and n["attrs"].get("activations", "int8") != "int8"}
    if higher:  # which linears ran with int16/float32 activations, for `edgebert convert` of this file
        onnx.helper.set_model_props(proto, {ACTIVATIONS_KEY: json.dumps(higher, sort_keys=True)})
    onnx.checker.check_model(proto, full_check=True)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(proto, str(out))
    _write_beside(out.parent, model_file.metadata[names.TOKENIZER], desc)
    return {"nodes": len(b.nodes), "int8_linears": b.int8_linears, "float_linears": b.float_linears}


class _Builder:
    """ONNX nodes over padded (B, T, W) activations named as in our graph; constants by name."""

    def __init__(self, tensors: dict[str, np.ndarray], widths: dict[str, int], max_positions: int):
        self.tensors, self.nodes, self.consts, self.inputs = tensors, [], {}, ["input_ids", "attention_mask"]
        self.count, self.int8_linears, self.float_linears, self._mask_bias, self._mask_rows = 0, 0, 0, None, None
        self.widths = widths
        self.max_positions = max_positions  # tokens the position tables (edgebert/onnx_attention.py) cover

    def width(self, value: str) -> int:
        """The row width of a graph value."""
        return self.widths[value]

    def const(self, value, name: str | None = None) -> str:
        name = name or f"c{len(self.consts)}"
        self.consts[name] = np.asarray(value)
        return name

    def op(self, op_type: str, inputs: list[str], out: str | None = None, n_out: int = 1, **attrs):
        import onnx
        self.count += 1
        outs = [out] if out else [f"t{self.count}_{i}" for i in range(n_out)]
        self.nodes.append(onnx.helper.make_node(op_type, inputs, outs, name=f"n{self.count}_{op_type}", **attrs))
        return outs[0] if n_out == 1 else outs

    def mask_bias(self) -> str:
        """(B, 1, 1, T) float: 0 for real keys, MASKED for padding."""
        if self._mask_bias is None:
            m = self.op("Cast", ["attention_mask"], to=1)
            keep = self.op("Sub", [self.const(np.float32(1)), m])
            bias = self.op("Mul", [keep, self.const(np.float32(MASKED))])
            self._mask_bias = self.op("Unsqueeze", [bias, self.const(np.array([1, 2], np.int64))])
        return self._mask_bias

    def mask_rows(self) -> str:
        """(B, T, 1) float: 1 for real tokens, 0 for padding."""
        if self._mask_rows is None:
            m = self.op("Cast", ["attention_mask"], to=1)
            self._mask_rows = self.op("Unsqueeze", [m, self.const(np.array([-1], np.int64))])
        return self._mask_rows


def _embed(b: _Builder, node: dict) -> None:
    p, attrs, t = node["params"], node["attrs"], b.tensors
    word = p["word"]
    if word + names.SCALE in t:  # int8 rows: q[ids] * scale[ids]
        rows = b.op("Cast", [b.op("Gather", [b.const(t[word + names.WEIGHT], word), "input_ids"])], to=1)
        scale = b.op("Gather", [b.const(t[word + names.SCALE], word + names.SCALE), "input_ids"])
        x = b.op("Mul", [rows, b.op("Unsqueeze", [scale, b.const(np.array([-1], np.int64))])])
    else:
        x = b.op("Gather", [b.const(t[word + names.WEIGHT], word), "input_ids"])
    offset = attrs.get("position_offset", 0)
    if attrs.get("position_ids", "column") == "column":
        seq = b.op("Gather", [b.op("Shape", ["input_ids"]), b.const(np.int64(1))])
        pos = b.op("Range", [b.const(np.int64(offset)), b.op("Add", [seq, b.const(np.int64(offset))]),
                             b.const(np.int64(1))])
    else:  # numbered among real tokens (RoBERTa): (cumsum(mask) - 1) * mask + offset
        count = b.op("CumSum", ["attention_mask", b.const(np.int64(1))])
        pos = b.op("Add", [b.op("Mul", [b.op("Sub", [count, b.const(np.int64(1))]), "attention_mask"]),
                           b.const(np.int64(offset))])
    if "position" in p:
        x = b.op("Add", [x, b.op("Gather", [b.const(t[p["position"] + names.WEIGHT], p["position"]), pos])])
    if "token_type" in p:
        b.inputs.append("token_type_ids")
        tt = b.op("Gather", [b.const(t[p["token_type"] + names.WEIGHT], p["token_type"]), "token_type_ids"])
        x = b.op("Add", [x, tt])
    _layer_norm(b, x, p["norm"], attrs["eps"], node["outputs"][0])


def _layer_norm(b: _Builder, x: str, prefix: str, eps: float, out: str) -> None:
    t = b.tensors
    b.op("LayerNormalization", [x, b.const(t[prefix + names.WEIGHT], prefix + names.WEIGHT),
                                b.const(t[prefix + names.BIAS], prefix + names.BIAS)], out, axis=-1, epsilon=eps)


def _linear(b: _Builder, node: dict) -> None:
    prefix, t, attrs = node["params"]["linear"], b.tensors, node["attrs"]
    x_in = x = node["inputs"][0]
    w = t[prefix + names.WEIGHT]
    if prefix + names.INPUT_SCALE in t:  # SmoothQuant: W * s stored, x / s here
        x = b.op("Mul", [x, b.const(t[prefix + names.INPUT_SCALE], prefix + names.INPUT_SCALE)])
    outliers = attrs.get("outliers") is not None
    if outliers:  # those channels leave the int8 product (the file's int8 columns there are zero) ...
        idx, cols = t[prefix + names.OUTLIERS], t[prefix + names.OUTLIER_WEIGHT]
        w = w.copy()
        w[:, idx] = 0
    if w.dtype == np.int8 and attrs.get("activations", "int8") == "int8":
        if outliers:  # ... and out of each row's quantization range (a 0/1 mask)
            mask = np.ones(w.shape[1], np.float32)
            mask[idx] = 0
            x = b.op("Mul", [x, b.const(mask, prefix + ".outlier_mask")])
        y = _int8_matmul(b, x, prefix, w)
        b.int8_linears += 1
    else:
        if w.dtype == np.int8:  # higher-precision activations: float x times the int8 weights, then the scales
            wf = _dequantized(b, b.const(np.ascontiguousarray(w.T), prefix + names.WEIGHT),
                              b.const(t[prefix + names.SCALE], prefix + names.SCALE))  # (K, N) * (N,)
        else:
            wf = b.const(np.ascontiguousarray(w.T), prefix + names.WEIGHT)
        y = b.op("MatMul", [x, wf])
        b.float_linears += 1
    if outliers:  # ... and come back in float32: x[..., idx] @ outlier_weight.T
        picked = b.op("Gather", [x_in, b.const(idx.astype(np.int64), prefix + names.OUTLIERS)], axis=-1)
        y = b.op("Add", [y, b.op("MatMul", [picked, b.const(np.ascontiguousarray(cols.T),
                                                             prefix + names.OUTLIER_WEIGHT)])])
    last = node["outputs"][0] if attrs["activation"] == "none" else None
    y = b.op("Add", [y, b.const(t[prefix + names.BIAS], prefix + names.BIAS)], last)
    if last is None:
        _activation(b, y, attrs["activation"], node["outputs"][0])


def _dequantized(b: _Builder, q: str, scale: str) -> str:
    """Cast(q) * scale: an int8 weight and its scales, broadcast by the caller's shapes. Not
    DequantizeLinear: ONNX Runtime 1.32 fuses DequantizeLinear + MatMul (at its default, extended
    optimisation level) into MatMulNBits, which quantizes the activations to 8 bits again: on
    all-mpnet-base-v2 with every linear at higher precision, one token of 64 texts came out at cosine
    0.76 to FP32 (0.997 unfused, as our runtime). Cast + Mul folds into a float weight at load."""
    return b.op("Mul", [b.op("Cast", [q], to=1), scale])


def _int8_matmul(b: _Builder, x: str, prefix: str, w: np.ndarray) -> str:
    """x (..., K) float @ our int8 W (N, K), activations quantized per token as our runtime does
    (runtime/kernels/gemm.py): around the row's centre c with half-range r, q = rint((x - c) / sa),
    sa = r / 127; y = MatMulInteger(q, W^T) * (sa * scale) + c * wsum, wsum = scale * rowsum(W)."""
    t, K = b.tensors, w.shape[1]
    scale = t[prefix + names.SCALE]
    rows = b.op("Reshape", [x, b.const(np.array([-1, K], np.int64))])  # (M, K)
    hi = b.op("ReduceMax", [rows], axes=[1], keepdims=1)  # (M, 1)
    lo = b.op("ReduceMin", [rows], axes=[1], keepdims=1)
    half = b.const(np.float32(0.5))
    c = b.op("Mul", [b.op("Add", [hi, lo]), half])
    sa = b.op("Max", [b.op("Div", [b.op("Mul", [b.op("Sub", [hi, lo]), half]), b.const(np.float32(127))]),
                      b.const(np.float32(1e-30))])  # a constant row: any scale, q = 0
    q = b.op("Cast", [b.op("Clip", [b.op("Round", [b.op("Div", [b.op("Sub", [rows, c]), sa])]),
                                    b.const(np.float32(-127)), b.const(np.float32(127))])], to=3)  # int8
    acc = b.op("MatMulInteger", [q, b.const(np.ascontiguousarray(w.T), prefix + names.WEIGHT)])  # (M, N) int32
    wsum = (scale * w.astype(np.int64).sum(axis=1)).astype(np.float32)[None, :]  # (1, N)
    y = b.op("Add", [b.op("Mul", [b.op("Cast", [acc], to=1),
                                  b.op("Mul", [sa, b.const(scale[None, :], prefix + names.SCALE)])]),
                     b.op("Mul", [c, b.const(wsum, prefix + ".wsum")])])
    lead = b.op("Slice", [b.op("Shape", [x]), b.const(np.array([0], np.int64)), b.const(np.array([-1], np.int64))])
    shape = b.op("Concat", [lead, b.const(np.array([w.shape[0]], np.int64))], axis=0)
    return b.op("Reshape", [y, shape])


def _activation(b: _Builder, y: str, activation: str, out: str) -> None:
    if activation == "gelu":  # exact GELU: 0.5 x (1 + erf(x / sqrt 2))
        erf = b.op("Erf", [b.op("Div", [y, b.const(np.float32(math.sqrt(2.0)))])])
        half = b.op("Mul", [y, b.const(np.float32(0.5))])
        b.op("Mul", [half, b.op("Add", [erf, b.const(np.float32(1.0))])], out)
    elif activation == "gelu_tanh":  # 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))
        cube = b.op("Mul", [b.op("Mul", [y, y]), y])
        inner = b.op("Mul", [b.op("Add", [y, b.op("Mul", [cube, b.const(np.float32(0.044715))])]),
                             b.const(np.float32(math.sqrt(2.0 / math.pi)))])
        half = b.op("Mul", [y, b.const(np.float32(0.5))])
        b.op("Mul", [half, b.op("Add", [b.op("Tanh", [inner]), b.const(np.float32(1.0))])], out)
    elif activation in ("tanh", "relu"):
        b.op(activation.capitalize(), [y], out)
    else:
        raise UnsupportedModel(f"activation {activation!r} cannot be exported to ONNX yet")


def _add_norm(b: _Builder, node: dict) -> None:
    x = b.op("Add", node["inputs"][:2])
    _layer_norm(b, x, node["params"]["norm"], node["attrs"]["eps"], node["outputs"][0])


def _add(b: _Builder, node: dict) -> None:
    b.op("Add", node["inputs"][:2], node["outputs"][0])


def _geglu(b: _Builder, node: dict) -> None:
    """GELU(first half) * second half."""
    a, gate = b.op("Split", [node["inputs"][0]], n_out=2, axis=2)
    _activation(b, a, "gelu", node["outputs"][0] + ".gelu")
    b.op("Mul", [node["outputs"][0] + ".gelu", gate], node["outputs"][0])


def _norm(b: _Builder, node: dict) -> None:
    _layer_norm(b, node["inputs"][0], node["params"]["norm"], node["attrs"]["eps"], node["outputs"][0])


def _first_token(b: _Builder, node: dict) -> None:
    b.op("Gather", [node["inputs"][0], b.const(np.int64(0))], node["outputs"][0], axis=1)  # (B, W)


def _mean_pool(b: _Builder, node: dict) -> None:
    m = b.mask_rows()
    total = b.op("ReduceSum", [b.op("Mul", [node["inputs"][0], m]), b.const(np.array([1], np.int64))], keepdims=0)
    b.op("Div", [total, b.op("ReduceSum", [m, b.const(np.array([1], np.int64))], keepdims=0)], node["outputs"][0])


def _tied_linear(b: _Builder, node: dict) -> None:
    t, word, bias = b.tensors, node["params"]["weight"], node["params"]["bias"]
    w = t[word + names.WEIGHT]
    if w.dtype == np.int8:  # int8 rows, a scale per row: (V, H) * (V, 1)
        wf = _dequantized(b, b.const(w, word), b.const(t[word + names.SCALE][:, None], word + names.SCALE + ".rows"))
    else:
        wf = b.const(w, word)
    y = b.op("MatMul", [node["inputs"][0], b.op("Transpose", [wf], perm=[1, 0])])
    b.op("Add", [y, b.const(t[bias + names.BIAS], bias + names.BIAS)], node["outputs"][0])


LOWER = {"embed": _embed, "linear": _linear, "add_norm": _add_norm, "norm": _norm, "add": _add, "geglu": _geglu,
         "first_token": _first_token, "mean_pool": _mean_pool, "tied_linear": _tied_linear, **ATTENTION_LOWER}


def _write_beside(folder: Path, tokenizer_json: str, desc) -> None:
    """The tokenizer and the pooling as sentence-transformers lays them out."""
    (folder / "tokenizer.json").write_text(tokenizer_json, encoding="utf-8")
    max_length = desc.tokenizer_config["max_length"]
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": max_length}, indent=2))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_length}, indent=2))
    pooling, width = desc.pooling, desc.config["hidden_size"]
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": width, **{f"pooling_mode_{m}": pooling["mode"] == key for m, key in
                                              (("cls_token", "cls"), ("mean_tokens", "mean"),
                                               ("max_tokens", "max"))}}, indent=2))
    if pooling["normalize"]:
        (folder / "2_Normalize").mkdir(exist_ok=True)
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize",
                        "type": "sentence_transformers.models.Normalize"})
    (folder / "modules.json").write_text(json.dumps(modules, indent=2))
