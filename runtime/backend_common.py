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


def float_linear(node: dict, ctx, activation: str):
    """A linear layer in float32: dequantized weight with any smoothing folded in."""
    prefix = node["params"]["linear"]
    w = effective_float_weight(ctx.tensor(prefix + names.WEIGHT), ctx.tensors.get(prefix + names.SCALE),
                               ctx.tensors.get(prefix + names.INPUT_SCALE))
    bias = ctx.tensor(prefix + names.BIAS)
    (x_name,), (out_name,) = node["inputs"], node["outputs"]

    def step(v):
        v[out_name] = ref.linear_f32_ref(v[x_name], w, bias, activation)
    return step


def effective_float_weight(w, scale, input_scale):
    """The float32 (N, K) weight a float-activation linear multiplies by: dequantized, smoothing folded in."""
    if w.dtype == np.int8:
        w = w.astype(np.float32) * scale[:, None]
    if input_scale is not None:
        w = w * input_scale[None, :]
    return np.ascontiguousarray(w, dtype=np.float32)


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


def tanh_after(bind_linear, node: dict, ctx, tanh):
    """The pooler's ``linear`` with ``activation="tanh"``: the same linear without it (the int8
    GEMM has no tanh epilogue), then ``tanh`` over its output."""
    inner = bind_linear({**node, "attrs": {**node["attrs"], "activation": "none"}}, ctx)
    (out_name,) = node["outputs"]

    def step(v):
        inner(v)
        v[out_name] = tanh(v[out_name])
    return step
