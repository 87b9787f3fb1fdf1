"""An ONNX export of a BERT encoder mapped onto our spec by structure, not by names.

The graph's nodes are topologically sorted (an ONNX rule), so its linear layers and LayerNorms
come in the order of the math: the embeddings' LayerNorm, then per layer three linears that read
the same tensor (Q, K, V: told apart by which side of the attention scores they feed), the output
projection, a LayerNorm, the up and down projections, a LayerNorm. Every step is checked (the
residual adds, the GELU between up and down, the attention's Softmax); what does not match is
refused naming the node. Heads: none, BERT's pooler, pooler + classifier (sequence
classification), or sentence-transformers pooling (mean / cls / max, normalised or not) inside
the graph. ONNX Runtime's fused com.microsoft ops and activation Q/DQ pairs are first rewritten into
standard ops (converters/onnx_fused.py). int8 weights (quantize_dynamic's MatMulInteger, QDQ or
weight-only DequantizeLinear / Cast + Mul, our own export: converters/onnx_own.py) are kept where they are
symmetric per output channel or per tensor (``ModelSpec.prequantized``) and requantized otherwise.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from edgebert import names
from edgebert.errors import UnsupportedModel

from . import source
from .family import _max_length
from .onnx_graph import Graph, Linear, Norm, attr, read_onnx
from .onnx_own import row_int8_table, source_activations
from .spec import EncoderConfig, ModelSpec

QMAX = 127  # converters/quantize.py's symmetric range: an int8 source value of -128 cannot be kept
INDEX_PATH = ("Cast", "Expand", "Slice", "Unsqueeze", "Squeeze", "Reshape", "Identity")  # ids buffer -> lookup
MAX_INDEX_PATH = 32  # steps followed along a data path (index buffers, attention scaling)
SCALE_RTOL = 1e-5  # float32 scale constants against 1/sqrt(head width)
TOKENIZER_HELP = ("pass --tokenizer DIR (a folder with tokenizer.json or vocab.txt), or put tokenizer.json "
                  "beside the .onnx file")


def load_onnx(path: str | Path, tokenizer: str | Path | None = None) -> ModelSpec:
    path = Path(path)
    g = Graph(read_onnx(path), str(path))
    events = []  # (node index, Linear | Norm) in graph order
    for n in g.nodes:
        found = g.linear_at(n) or g.norm_at(n)
        if found is not None:
            events.append((g.index[id(n)], found))
    parts = [e for _, e in sorted(events, key=lambda e: e[0])]
    if not parts or not isinstance(parts[0], Norm):
        g.refuse("no embedding LayerNorm found before the first linear layer")
    emb = _embeddings(g, parts[0])
    layers, h, i = [], parts[0].out, 1
    while i < len(parts) and isinstance(parts[i], Linear) and parts[i].x == h:
        fused = _split_qkv(g, parts[i])  # one (3H, H) linear and a Split (ours, ORT's optimizer)
        n = 6 if fused else 8
        if i + n > len(parts):
            break
        layers.append(_layer(g, fused + parts[i + 1:i + n] if fused else parts[i:i + n], h, len(layers)))
        h, i = parts[i + n - 1].out, i + n
    if not layers:
        g.refuse("no encoder layer found (three linears reading the embeddings' LayerNorm)")
    head, pooling = _head(g, parts[i:], h)
    beside = _read_beside(path.parent / "config.json")
    H = emb["word"].shape[1]
    config = EncoderConfig(
        vocab_size=emb["word"].shape[0], hidden_size=H, num_layers=len(layers), num_heads=layers[0]["heads"],
        intermediate_size=layers[0]["up"].weight.shape[0], max_position_embeddings=emb["position"].shape[0],
        type_vocab_size=0 if emb["token_type"] is None else emb["token_type"].shape[0],
        layer_norm_eps=parts[0].eps, hidden_act=_activation(g, layers))
    tok_dir = _tokenizer_dir(path, tokenizer)
    st = source.sentence_transformers_settings(path.parent)
    if pooling is None:
        pooling = st["pooling"] if st else {"mode": "mean", "normalize": False}
    spec = ModelSpec(source_architecture=_label(beside, head), config=config,
                     tokenizer_json=source.load_tokenizer_json(tok_dir),
                     max_length=_max_length(tok_dir, config, st), pad_token_id=int(beside.get("pad_token_id", 0) or 0),
                     pooling=pooling)
    _fill(spec, emb, parts[0], layers)
    if head is not None:
        _fill_classifier(spec, head, beside)
    spec.higher_precision = source_activations(g, spec)
    return spec


def _activation(g: Graph, layers: list) -> str:
    acts = [L["act"] for L in layers]
    if len(set(acts)) != 1:
        g.refuse(f"the layers' feed-forward activations differ: {acts}", layers[acts.index(acts[-1])]["up"].node)
    return acts[0]


# ---- embeddings ----------------------------------------------------------------------------


def _embeddings(g: Graph, norm: Norm) -> dict:
    """Tables summed into the first LayerNorm: word and token type indexed by graph inputs (the larger
    table is the vocabulary), positions by a constant 0..T-1. A token type indexed by constant zeros
    (no token_type_ids input) is folded into the position table."""
    _, walked = g.ancestors(norm.x, set())
    gathers = [n for n in walked if n.op_type == "Gather" and _table(g, n) is not None]
    outs = {_lookup_out(g, n) for n in gathers}
    _, between = g.ancestors(norm.x, outs)
    if len(gathers) < 2 or any(n.op_type != "Add" for n in between):
        g.refuse("the embeddings' LayerNorm must read a sum of embedding lookups (Gather of constant tables)",
                 norm.node)
    by_input, constant = [], []
    for n in gathers:
        found, _ = g.ancestors(n.input[1], set(g.inputs))
        (by_input if found else constant).append(n)
    if not 1 <= len(by_input) <= 2 or len(constant) > 2:
        g.refuse(f"expected word (and token type) lookups indexed by graph inputs, found {len(by_input)}", norm.node)
    by_input.sort(key=lambda n: -_table(g, n).shape[0])
    tables = {"word": _table(g, by_input[0]), "token_type": None, "position": None,
              "int8": any(g.const(n.input[0]).dtype != np.float32 or g.int8_weight(n.input[0]) is not None
                          for n in gathers)}
    word_rows = row_int8_table(g, by_input[0])  # symmetric per row, as ours: kept
    tables["word_q"] = (word_rows[0], word_rows[1]) if word_rows is not None else (None, None)
    if len(by_input) == 2:
        tables["token_type"] = _table(g, by_input[1])
    zero_types = None
    for n in constant:
        ids = _index_source(g, n)
        if ids is not None and ids.size and not ids.any():
            zero_types = _table(g, n)[0]
        elif ids is not None and np.array_equal(ids.reshape(-1)[:8], np.arange(min(8, ids.size))):
            tables["position"] = _table(g, n)
        else:
            g.refuse("position ids are not 0, 1, 2, ... (RoBERTa-style positions are not supported for ONNX "
                     "import yet)", n)
    if tables["position"] is None:
        g.refuse("no position embedding lookup found", norm.node)
    if zero_types is not None:  # no token_type_ids input: every token has type 0
        tables["position"] = tables["position"] + zero_types[None, :]
    return tables


def _table(g: Graph, n) -> np.ndarray | None:
    """A Gather's constant (rows, width) table; an int8 one (ONNX Runtime quantizes Gather) dequantized
    by the DequantizeLinear that follows the lookup."""
    t = g.const(n.input[0])
    if t is None or t.ndim != 2 or attr(n, "axis", 0) != 0:
        return None
    if t.dtype == np.float32:
        return t
    rows = row_int8_table(g, n)
    if rows is not None:  # our export's int8 rows, a scale per row
        return rows[0].astype(np.float32) * rows[1][:, None]
    dq = g.only_consumer(n.output[0], "DequantizeLinear")
    scale = g.const(dq.input[1]) if dq is not None else None
    zero = g.const(dq.input[2]) if dq is not None and len(dq.input) > 2 and dq.input[2] else np.zeros((), t.dtype)
    if t.dtype not in (np.int8, np.uint8) or scale is None or zero is None or scale.size != 1 or zero.size != 1:
        g.refuse(f"embedding table of dtype {t.dtype}: only int8/uint8 with one constant scale and zero point "
                 "(DequantizeLinear after the lookup) is supported", n)
    return ((t.astype(np.float32) - np.float32(zero)) * np.float32(scale)).astype(np.float32)


def _lookup_out(g: Graph, n) -> str:
    rows = row_int8_table(g, n)
    if rows is not None:
        return rows[2]
    dq = g.only_consumer(n.output[0], "DequantizeLinear")
    return dq.output[0] if dq is not None else n.output[0]


def _index_source(g: Graph, n) -> np.ndarray | None:
    """The constant integer buffer a lookup's indices are sliced or expanded from."""
    rng = g.producer.get(n.input[1])
    if rng is not None and rng.op_type == "Range":  # Range(start, end, 1): our export's column positions
        start, delta = g.const(rng.input[0]), g.const(rng.input[2])
        if start is not None and delta is not None and int(delta) == 1:
            return np.arange(int(start), int(start) + 8)
    name = n.input[1]  # the data path (first inputs) of slicing and broadcasting ops, up to a constant
    for _ in range(MAX_INDEX_PATH):
        v = g.consts.get(name)
        m = g.producer.get(name)
        if v is not None or m is None or m.op_type not in INDEX_PATH:
            return v
        name = m.input[0]
    return None


# ---- layers --------------------------------------------------------------------------------


def _layer(g: Graph, p: list, h: str, i: int) -> dict:
    qkv, (o, n1, up, down, n2) = p[:3], p[3:]
    if not (isinstance(o, Linear) and isinstance(n1, Norm) and isinstance(up, Linear) and isinstance(down, Linear)
            and isinstance(n2, Norm)) or any(lin.x != h for lin in qkv):
        g.refuse(f"layer {i}: expected Q/K/V, output projection, LayerNorm, up, down, LayerNorm",
                 getattr(p[3], "node", None))
    _residual(g, n1, o.out, h, i)
    if up.x != n1.out:
        g.refuse(f"layer {i}: the up projection does not read the attention block's LayerNorm", up.node)
    act = g.gelu(up.out, down.x, up.node)
    _residual(g, n2, down.out, n1.out, i)
    outs = {lin.out: lin for lin in qkv}
    found, walked = g.ancestors(o.x, set(outs))
    soft = [n for n in walked if n.op_type == "Softmax"]
    if found != set(outs) or len(soft) != 1:
        g.refuse(f"layer {i}: the output projection must read one softmax attention over Q, K and V", o.node)
    _, up_walk = g.ancestors(soft[0].input[0], set(outs))
    scores = [n for n in up_walk if n.op_type == "MatMul" and g.const(n.input[1]) is None]
    if len(scores) != 1:
        g.refuse(f"layer {i}: expected one Q @ K^T product before the softmax", soft[0])
    q_found, q_walk = g.ancestors(scores[0].input[0], set(outs))
    k_found, _ = g.ancestors(scores[0].input[1], set(outs))
    if len(q_found) != 1 or len(k_found) != 1 or q_found == k_found:
        g.refuse(f"layer {i}: cannot tell the query from the key", scores[0])
    q, k = outs[q_found.pop()], outs[k_found.pop()]
    v = next(lin for lin in qkv if lin is not q and lin is not k)
    H = q.weight.shape[0]
    heads = _num_heads(g, q_walk + [scores[0]], H, i)
    _check_scale(g, soft[0], scores[0], q.out, k.out, H // heads, i)
    return {"q": q, "k": k, "v": v, "o": o, "attn_norm": n1, "up": up, "down": down, "ffn_norm": n2,
            "heads": heads, "act": act}


def _check_scale(g: Graph, soft, scores, q: str, k: str, head_dim: int, i: int) -> None:
    """Our attention scales the scores by 1/sqrt(head width). Where every factor on the way (on q, on k,
    on the scores) is a constant, their product must be that; factors computed from shapes (torch's
    sdpa, our export) are the exporter's head width and are not re-derived."""
    factors = [_path_factor(g, soft.input[0], scores.output[0]), _path_factor(g, scores.input[0], q),
               _path_factor(g, scores.input[1], k)]
    if any(f is None for f in factors):
        return
    total, want = float(np.prod(factors)), 1.0 / np.sqrt(head_dim)
    if not np.isclose(total, want, rtol=SCALE_RTOL, atol=0):
        g.refuse(f"layer {i}: the attention scores are scaled by {total:.7g}, not 1/sqrt({head_dim}) = {want:.7g}",
                 soft)


def _path_factor(g: Graph, start: str, stop: str) -> float | None:
    """The product of the constant Mul/Div factors on the data path from ``start`` up to ``stop``; None
    when a factor is computed rather than constant."""
    factor, name = 1.0, start
    for _ in range(MAX_INDEX_PATH):
        if name == stop:
            return factor
        n = g.producer.get(name)
        data = [x for x in n.input if x and g.const(x) is None and g.ancestors(x, {stop})[0]] if n else []
        if len(set(data)) != 1:
            return None
        if n.op_type in ("Mul", "Div"):
            other = [x for x in n.input if x != data[0]]
            c = g.const(other[0]) if len(other) == 1 else None
            if c is None or c.size != 1 or (n.op_type == "Div" and n.input[0] != data[0]):
                return None
            c = float(np.asarray(c, np.float64).reshape(-1)[0])
            factor *= c if n.op_type == "Mul" else 1.0 / c
        name = data[0]
    return None


def _split_qkv(g: Graph, lin: Linear) -> list[Linear] | None:
    """A linear whose output a Split cuts into three equal parts on the last axis: Q/K/V views of it."""
    split = g.only_consumer(lin.out, "Split")
    N = lin.weight.shape[0]
    if split is None or len(split.output) != 3 or N % 3 or attr(split, "axis", 0) not in (-1, 2):
        return None
    sizes = g.const(split.input[1]) if len(split.input) > 1 and split.input[1] else None
    if sizes is not None and list(np.asarray(sizes).reshape(-1)) != [N // 3] * 3:
        g.refuse("a Split of the fused Q/K/V projection into unequal parts", split)
    views = []
    for j, out in enumerate(split.output):
        rows = slice(j * N // 3, (j + 1) * N // 3)
        views.append(replace(lin, out=out, weight=lin.weight[rows], bias=None if lin.bias is None else lin.bias[rows],
                             outliers=None if lin.outliers is None else (lin.outliers[0], lin.outliers[1][rows]),
                             **{k: None if v is None else v[rows] for k, v in (("q", lin.q), ("scale", lin.scale),
                                                                               ("zero_point", lin.zero_point))}))
    return views


def _residual(g: Graph, norm: Norm, a: str, b: str, i: int) -> None:
    add = g.producer.get(norm.x)
    if add is None or add.op_type != "Add" or set(add.input) != {a, b}:
        g.refuse(f"layer {i}: a LayerNorm must read the residual sum of its block's output and input", norm.node)


def _num_heads(g: Graph, walked: list, H: int, i: int) -> int:
    """Heads from the query's reshape to (B, T, heads, head_dim), its constant or inferred shape."""
    for n in walked:
        dims = g.shapes.get(n.output[0], [])
        if n.op_type == "Reshape":
            shape = g.const(n.input[1])
            if shape is None and g.producer.get(n.input[1]) is not None and \
                    g.producer[n.input[1]].op_type == "Concat":
                shape = [_scalar(g, x) for x in g.producer[n.input[1]].input]
            if shape is not None and len(shape) == 4:
                dims = list(shape)
        if len(dims) == 4 and n.op_type == "Reshape" and isinstance(dims[2], (int, np.integer)) and dims[2] > 0 \
                and H % dims[2] == 0 and dims[3] in (-1, H // dims[2]):  # (B, T, heads, head_dim or -1)
            return int(dims[2])
    g.refuse(f"layer {i}: cannot read the number of attention heads from the query's reshape")


def _scalar(g: Graph, name: str):
    v = g.const(name)
    if v is None and g.producer.get(name) is not None and g.producer[name].op_type == "Unsqueeze":
        v = g.const(g.producer[name].input[0])
    return int(np.asarray(v).reshape(-1)[0]) if v is not None and np.asarray(v).size == 1 else None


# ---- heads ---------------------------------------------------------------------------------


def _head(g: Graph, rest: list, h: str) -> tuple[dict | None, dict | None]:
    """Sequence classification (pooler + classifier), a pooler alone (ignored: a bare encoder), or
    sentence-transformers pooling; refused otherwise."""
    if any(isinstance(p, Norm) for p in rest) or len(rest) > 2:
        g.refuse("after the encoder, only a pooler and a classifier are supported",
                 rest[0].node if rest else None)
    if rest:
        pooler = rest[0]
        found, walked = g.ancestors(pooler.x, {h})
        tanh = g.only_consumer(pooler.out, "Tanh")
        if not found or tanh is None or not {n.op_type for n in walked} <= {"Gather", "Slice", "Squeeze", "Reshape"}:
            g.refuse("a linear after the encoder that is not BERT's pooler (first token, dense, tanh)", pooler.node)
        if len(rest) == 1:
            return None, None
        cls = rest[1]
        if not g.ancestors(cls.x, {tanh.output[0]})[0]:
            g.refuse("the classifier does not read the pooler's output", cls.node)
        return {"pooler": pooler, "classifier": cls}, None
    pooled = [o for o in g.outputs if o != h]
    if not pooled:
        return None, None
    found, walked = g.ancestors(pooled[0], {h})
    ops = {n.op_type for n in walked}
    if not found:
        return None, None
    mode = "max" if "ReduceMax" in ops else "mean" if ops & {"ReduceSum", "ReduceMean"} else "cls"
    return None, {"mode": mode, "normalize": bool(ops & {"ReduceL2", "LpNormalization", "Sqrt"})}


# ---- the spec ------------------------------------------------------------------------------


def _fill(spec: ModelSpec, emb: dict, norm: Norm, layers: list) -> None:
    spec[names.TOKEN_EMBD.prefix() + names.WEIGHT] = emb["word"]
    if emb["int8"]:  # int8 per tensor in the source, per row here: requantized
        spec.prequantized[names.TOKEN_EMBD.prefix() + names.WEIGHT] = emb["word_q"]
    spec[names.POSITION_EMBD.prefix() + names.WEIGHT] = emb["position"]
    if emb["token_type"] is not None:
        spec[names.TOKEN_TYPE_EMBD.prefix() + names.WEIGHT] = emb["token_type"]
    _norm(spec, names.EMBD_NORM.prefix(), norm)
    for i, L in enumerate(layers):
        qkv = [L["q"], L["k"], L["v"]]
        _linear(spec, names.ATTN_QKV.prefix(i), qkv)
        for role, key in ((names.ATTN_OUTPUT, "o"), (names.FFN_UP, "up"), (names.FFN_DOWN, "down")):
            _linear(spec, role.prefix(i), [L[key]])
        _norm(spec, names.ATTN_NORM.prefix(i), L["attn_norm"])
        _norm(spec, names.FFN_NORM.prefix(i), L["ffn_norm"])


def _linear(spec: ModelSpec, prefix: str, parts: list[Linear]) -> None:
    spec[prefix + names.WEIGHT] = np.concatenate([p.weight for p in parts])
    spec[prefix + names.BIAS] = np.concatenate([p.bias if p.bias is not None else np.zeros(p.weight.shape[0],
                                                                                              np.float32)
                                                for p in parts])
    with_outliers = [p.outliers for p in parts if p.outliers is not None]
    if with_outliers:  # our export's float32 channels: the same channels for every part of one linear
        if len(with_outliers) != len(parts) or any(not np.array_equal(o[0], with_outliers[0][0]) for o in with_outliers):
            raise UnsupportedModel(f"{prefix}: parts of one linear with different outlier channels")
        spec.outliers[prefix] = with_outliers[0][0]
    if any(p.int8 for p in parts):  # kept where every part is int8, symmetric, per output channel
        keep = all(p.q is not None and not p.zero_point.any() and p.q.min() >= -QMAX for p in parts)
        q = np.concatenate([p.q for p in parts]) if keep else None
        entry = (q, np.concatenate([p.scale for p in parts]) if keep else None)
        smoothed = [p.input_scale for p in parts if p.input_scale is not None]
        if keep and smoothed:  # one fused Q/K/V input: one input scale
            if len(smoothed) != len(parts) or any(not np.array_equal(s, smoothed[0]) for s in smoothed):
                raise UnsupportedModel(f"{prefix}: parts of one linear with different input scales")
            entry += (smoothed[0],)
        spec.prequantized[prefix + names.WEIGHT] = entry
        spec.prequantized_from = ", ".join(sorted({p.int8 for p in parts if p.int8} | _forms(spec)))


def _forms(spec: ModelSpec) -> set[str]:
    return set(spec.prequantized_from.split(", ")) - {""}


def _norm(spec: ModelSpec, prefix: str, norm: Norm) -> None:
    spec[prefix + names.WEIGHT], spec[prefix + names.BIAS] = norm.gamma, norm.beta


def _fill_classifier(spec: ModelSpec, head: dict, beside: dict) -> None:
    from .spec import Slot

    for role, lin in ((names.POOLER, head["pooler"]), (names.CLASSIFIER, head["classifier"])):
        bias = lin.bias if lin.bias is not None else np.zeros(lin.weight.shape[0], np.float32)
        for suffix, value in ((names.WEIGHT, lin.weight), (names.BIAS, bias)):
            spec.add_slots({role.prefix() + suffix: Slot(value.shape, role, suffix)})
            spec[role.prefix() + suffix] = value
    n = head["classifier"].weight.shape[0]
    raw = beside.get("id2label") or {}
    labels = {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) and len(raw) == n else {}
    spec.head = {"task": "sequence-classification",
                 "id2label": labels or {str(i): f"LABEL_{i}" for i in range(n)},
                 "problem_type": beside.get("problem_type")}


def _label(beside: dict, head) -> str:
    archs = beside.get("architectures")
    if isinstance(archs, list) and len(archs) == 1 and isinstance(archs[0], str) and len(archs[0]) < 60:
        return f"ONNX {archs[0]}"
    return "ONNX BertForSequenceClassification" if head else "ONNX BertModel"


def _read_beside(path: Path) -> dict:
    """config.json beside the file (optimum writes it): labels, pad id, the source class."""
    return source.read_json(path) if path.is_file() else {}


def _tokenizer_dir(path: Path, tokenizer) -> Path:
    if tokenizer is not None:
        t = Path(tokenizer)
        if t.is_file() and t.name == "tokenizer.json":
            return t.parent
        if not t.is_dir():
            raise UnsupportedModel(f"--tokenizer {t}: not a folder (expected one with tokenizer.json or vocab.txt)")
        return t
    if (path.parent / "tokenizer.json").is_file() or (path.parent / "vocab.txt").is_file():
        return path.parent
    raise UnsupportedModel(f"{path}: no tokenizer beside the ONNX file; {TOKENIZER_HELP}")

