"""What both backends bind the same way: float-activation linears and tied weights."""
from __future__ import annotations

import numpy as np

from edgebert import names

from . import reference as ref


def layer_norm_params(node: dict, ctx) -> tuple[np.ndarray, np.ndarray, float]:
    """(gamma, beta, eps) of a node with a ``norm`` param (add_norm, norm)."""
    p = node["params"]["norm"]
    return ctx.tensor(p + names.WEIGHT), ctx.tensor(p + names.BIAS), float(node["attrs"]["eps"])


def is_float_linear(node: dict, w: np.ndarray) -> bool:
    """Float32 weights, or a layer the converter kept in float activations (``activations="float32"``)."""
    return w.dtype == np.float32 or node["attrs"].get("activations") == "float32"


def outliers_of(node: dict, ctx, prefix: str | None = None):
    """(channel indices (k,) int32, weight columns (N, k) float32) of a linear node with the ``outliers``
    attr, checked (strictly increasing within the input width); None without it. ``prefix``: the
    linear's, where the node is another op reading its weight (disentangled attention's pos_proj)."""
    from .kernels.gemm import check_outliers

    if prefix is None:
        if node["attrs"].get("outliers") is None:
            return None
        prefix = node["params"]["linear"]
    elif prefix + names.OUTLIERS not in ctx.tensors:
        return None
    w = ctx.tensor(prefix + names.WEIGHT)
    return check_outliers((ctx.tensor(prefix + names.OUTLIERS), ctx.tensor(prefix + names.OUTLIER_WEIGHT)), *w.shape)


def float_linear(node: dict, ctx, activation: str):
    """A linear layer in float32: dequantized weight with any smoothing folded in."""
    prefix = node["params"]["linear"]
    w = effective_float_weight(ctx.tensor(prefix + names.WEIGHT), ctx.tensors.get(prefix + names.SCALE),
                               ctx.tensors.get(prefix + names.INPUT_SCALE), outliers_of(node, ctx))
    bias = ctx.tensor(prefix + names.BIAS)
    (x_name,), (out_name,) = node["inputs"], node["outputs"]

    def step(v):
        v[out_name] = ref.linear_f32_ref(v[x_name], w, bias, activation)
    return step


def effective_float_weight(w, scale, input_scale, outliers=None):
    """The float32 (N, K) weight a float-activation linear multiplies by: dequantized, smoothing folded in,
    the outlier channels' own float32 columns in place."""
    if w.dtype == np.int8:
        w = w.astype(np.float32) * scale[:, None]
    if input_scale is not None:
        w = w * input_scale[None, :]
    w = np.ascontiguousarray(w, dtype=np.float32)  # a float32 file's own weight stays a view: no copy at load
    if outliers is not None:
        w = w.copy()  # the file's own weight may be a read-only view
        w[:, outliers[0]] = outliers[1]
    return w


def tied_as_linear(node: dict, ctx) -> dict:
    """A ``tied_linear`` node as a plain ``linear`` over aliases of the shared weight
    (the MLM decoder reads token_embd) and its own bias."""
    wp, bp = node["params"]["weight"], node["params"]["bias"]
    alias = f"{node['outputs'][0]}@tied"
    ctx.tensors[alias + names.WEIGHT] = ctx.tensor(wp + names.WEIGHT)
    ctx.tensors[alias + names.BIAS] = ctx.tensor(bp + names.BIAS)
    if wp + names.SCALE in ctx.tensors:
        ctx.tensors[alias + names.SCALE] = ctx.tensors[wp + names.SCALE]
    return {**node, "op": "linear", "params": {"linear": alias}, "attrs": {"activation": "none"}}


def embed_tables(node: dict, ctx) -> tuple:
    """(word, word scale or None, position rows from position_offset on, token type table, gamma, beta, eps)
    of an ``embed`` node. Without a ``token_type`` param the model has no token types: a one-row zero
    table, read at row 0 for every token (``zero_type_ids``), adds nothing (x + 0.0 == x)."""
    p = node["params"]
    word = ctx.tensor(p["word"] + names.WEIGHT)
    offset = int(node["attrs"].get("position_offset", 0))
    pos = (ctx.tensor(p["position"] + names.WEIGHT)[offset:] if "position" in p  # row k: position k + offset
           else np.zeros((1, word.shape[1]), dtype=np.float32))  # rotary models: read at row 0, adds nothing
    typ = (ctx.tensor(p["token_type"] + names.WEIGHT) if "token_type" in p
           else np.zeros((1, word.shape[1]), dtype=np.float32))
    g, b = ctx.tensor(p["norm"] + names.WEIGHT), ctx.tensor(p["norm"] + names.BIAS)
    return word, ctx.tensors.get(p["word"] + names.SCALE), pos, typ, g, b, float(node["attrs"]["eps"])


def type_ids_of(node: dict):
    """``values -> type ids`` for an embed node: its input, or zeros when the model has no token types."""
    name = node["inputs"][1]
    if "token_type" in node["params"]:
        return lambda v: v[name]
    return lambda v: np.zeros(len(v[name]), dtype=np.int32)


def position_ids_of(node: dict):
    """``values -> position ids`` for an embed node: its input, or zeros when it has no position table."""
    name = node["inputs"][2]
    if "position" in node["params"]:
        return lambda v: v[name]
    return lambda v: np.zeros(len(v[name]), dtype=np.int32)


# Activations applied after a linear layer's own (activation "none") output: the int8 GEMM
# epilogue knows only GELU. tanh: BERT's pooler; relu: DistilBERT's pre_classifier.
POST_ACTIVATIONS = {"tanh": lambda y: np.tanh(y, out=y), "relu": lambda y: np.maximum(y, 0, out=y),
                    "gelu_tanh": lambda y: _gelu_tanh(y)}


def _gelu_tanh(y: np.ndarray) -> np.ndarray:
    """In place, float32: 0.5 y (1 + tanh(sqrt(2/pi) (y + 0.044715 y^3))) (ALBERT's gelu_new)."""
    t = np.tanh(np.float32(0.7978845608028654) * (y + np.float32(0.044715) * y * y * y))
    y *= np.float32(0.5) * (np.float32(1.0) + t)
    return y


def activation_after(bind_linear, node: dict, ctx, activation):
    """A ``linear`` whose activation is in POST_ACTIVATIONS: the same linear without it, then
    ``activation`` over its output."""
    inner = bind_linear({**node, "attrs": {**node["attrs"], "activation": "none"}}, ctx)
    (out_name,) = node["outputs"]

    def step(v):
        inner(v)
        v[out_name] = activation(v[out_name])
    return step


def disentangled_positions(node: dict, ctx) -> tuple[np.ndarray, np.ndarray]:
    """(position queries, position keys) (nh, 2 span, d) of a ``disentangled_attention`` node, projected
    once at bind time: the rel table (normed when the node has ``rel_norm``) through the first 2H rows of
    ``pos_proj`` (the layer's own q and k rows with share_att_key), dequantized with any smoothing folded in."""
    p, heads = node["params"], int(node["attrs"]["num_heads"])
    rel = ctx.tensor(p["rel"] + names.WEIGHT)
    norm = None
    if "rel_norm" in p:
        norm = (ctx.tensor(p["rel_norm"] + names.WEIGHT), ctx.tensor(p["rel_norm"] + names.BIAS),
                float(node["attrs"]["eps"]))
    proj = p["pos_proj"]
    w = effective_float_weight(ctx.tensor(proj + names.WEIGHT), ctx.tensors.get(proj + names.SCALE),
                               ctx.tensors.get(proj + names.INPUT_SCALE), outliers_of(node, ctx, proj))
    return ref.disentangled_positions_ref(rel, w, ctx.tensor(proj + names.BIAS), heads, norm)
