"""The ``numpy`` backend: each op bound to its plain NumPy reference (runtime/reference.py).

With a float32 file this is the FP32 baseline; with an int8 file it is what the
Numba kernels are tested against. One binder per op of ``edgebert.ops.OPS``:
``binder(node, ctx) -> step``, where ``step(values)`` writes the node's output.
"""
from __future__ import annotations

from edgebert import names

from . import reference as ref
from .backend_common import (activation_after, disentangled_positions, embed_tables, float_linear,
                             is_float_linear, layer_norm_params, outliers_of,
                             position_ids_of, tied_as_linear, type_ids_of)
from .kernels.gemm_ref import qlinear_int16_ref, qlinear_ref


def embed(node, ctx):
    word, scale, pos, typ, g, b, eps = embed_tables(node, ctx)
    types, positions = type_ids_of(node), position_ids_of(node)
    (ids, _, _), (out_name,) = node["inputs"], node["outputs"]

    def step(v):
        v[out_name] = ref.embed_ref(v[ids], types(v), positions(v), word, scale, pos, typ, g, b, eps)
    return step


def linear(node, ctx):
    post = {"tanh": ref.tanh_ref, "relu": ref.relu_ref, "gelu_tanh": ref.gelu_tanh_ref}.get(
        node["attrs"].get("activation"))
    if post is not None:  # the pooler (tanh), DistilBERT's pre_classifier (relu)
        return activation_after(linear, node, ctx, post)
    prefix, act = node["params"]["linear"], node["attrs"].get("activation", "none")
    w = ctx.tensor(prefix + names.WEIGHT)
    if is_float_linear(node, w):
        return float_linear(node, ctx, act)
    scale, bias = ctx.tensors.get(prefix + names.SCALE), ctx.tensor(prefix + names.BIAS)
    input_scale = ctx.tensors.get(prefix + names.INPUT_SCALE)
    # two int8 passes (gemm.qlinear_int16) where the converter kept 16-bit activations
    ref_linear = qlinear_int16_ref if node["attrs"].get("activations") == "int16" else qlinear_ref
    outliers = outliers_of(node, ctx)
    (x_name,), (out_name,) = node["inputs"], node["outputs"]

    def step(v):
        v[out_name] = ref_linear(v[x_name], w, scale, bias, act, input_scale=input_scale, outliers=outliers)
    return step


def attention(node, ctx):
    heads, window = int(node["attrs"]["num_heads"]), node["attrs"].get("window")
    (qkv_name, off_name), (out_name,) = node["inputs"], node["outputs"]

    def step(v):
        v[out_name] = ref.attention_ref(v[qkv_name], v[off_name], heads, window)
    return step


def rotary(node, ctx):
    heads, theta = int(node["attrs"]["num_heads"]), float(node["attrs"]["theta"])
    (qkv_name, pos_name), (out_name,) = node["inputs"], node["outputs"]

    def step(v):
        v[out_name] = ref.rotary_ref(v[qkv_name], v[pos_name], heads, theta)
    return step


def add(node, ctx):
    (x_name, r_name), (out_name,) = node["inputs"], node["outputs"]

    def step(v):
        v[out_name] = ref.add_ref(v[x_name], v[r_name])
    return step


def neighbours(node, ctx):
    size = int(node["attrs"]["size"])
    (x_name, off_name), (out_name,) = node["inputs"], node["outputs"]

    def step(v):
        v[out_name] = ref.neighbours_ref(v[x_name], v[off_name], size)
    return step


def mean_pool(node, ctx):
    (x_name, off_name), (out_name,) = node["inputs"], node["outputs"]

    def step(v):
        v[out_name] = ref.mean_pool_ref(v[x_name], v[off_name])
    return step


def add_norm(node, ctx):
    g, b, eps = layer_norm_params(node, ctx)
    (x_name, r_name), (out_name,) = node["inputs"], node["outputs"]

    def step(v):
        v[out_name] = ref.add_norm_ref(v[x_name], v[r_name], g, b, eps)
    return step


def geglu(node, ctx):
    (x_name,), (out_name,) = node["inputs"], node["outputs"]

    def step(v):
        v[out_name] = ref.geglu_ref(v[x_name])
    return step


def first_token(node, ctx):
    (x_name, off_name), (out_name,) = node["inputs"], node["outputs"]

    def step(v):
        v[out_name] = ref.first_token_ref(v[x_name], v[off_name])
    return step


def norm(node, ctx):
    g, b, eps = layer_norm_params(node, ctx)
    (x_name,), (out_name,) = node["inputs"], node["outputs"]

    def step(v):
        v[out_name] = ref.layernorm_ref(v[x_name], g, b, eps)
    return step


def tied_linear(node, ctx):
    return linear(tied_as_linear(node, ctx), ctx)


def relative_attention(node, ctx):
    heads, buckets, distance = (int(node["attrs"][k]) for k in ("num_heads", "num_buckets", "max_distance"))
    table = ctx.tensor(node["params"]["bias"] + names.WEIGHT)
    (qkv_name, off_name), (out_name,) = node["inputs"], node["outputs"]

    def bias(length):
        return ref.relative_bias_ref(table, length, buckets, distance)

    def step(v):
        v[out_name] = ref.attention_ref(v[qkv_name], v[off_name], heads, position_bias=bias)
    return step


def disentangled_attention(node, ctx):
    heads, buckets, span = (int(node["attrs"][k]) for k in ("num_heads", "position_buckets", "max_relative_positions"))
    pos_query, pos_key = disentangled_positions(node, ctx)
    (qkv_name, off_name), (out_name,) = node["inputs"], node["outputs"]

    def step(v):
        v[out_name] = ref.disentangled_attention_ref(v[qkv_name], v[off_name], heads, pos_query, pos_key,
                                                     buckets, span)
    return step


BINDERS = {"embed": embed, "linear": linear, "attention": attention, "add_norm": add_norm, "geglu": geglu,
           "first_token": first_token, "norm": norm, "tied_linear": tied_linear,
           "rotary": rotary, "add": add, "mean_pool": mean_pool,
           "relative_attention": relative_attention, "disentangled_attention": disentangled_attention,
           "neighbours": neighbours}
