"""The ``numba`` backend: each op bound to its fast kernel (runtime/kernels/), over the
calling thread's reused buffers (``ctx.buffer``). Weights are prepared once here, at
bind time (int8 weights packed for the GEMM path). One binder per op of
``edgebert.ops.OPS``: ``binder(node, ctx) -> step``; the feed-forward fusion
(runtime/fusion.py) then reads what ``linear`` recorded in ``ctx.packed``.
"""
from __future__ import annotations

import numpy as np

from edgebert import names

from .backend_common import (POST_ACTIVATIONS, activation_after, disentangled_positions, embed_tables,
                             float_linear, is_float_linear, outliers_of,
                             layer_norm_params, position_ids_of, tied_as_linear, type_ids_of)


def embed(node, ctx):
    embed_kernel = ctx.kernel("norm", "embed")
    word, scale, pos, typ, g, b, eps = embed_tables(node, ctx)
    scale = scale if scale is not None else np.ones(word.shape[0], dtype=np.float32)
    types, positions = type_ids_of(node), position_ids_of(node)
    (ids, _, _), (out_name,) = node["inputs"], node["outputs"]

    def step(v):
        out = ctx.buffer(out_name, len(v[ids]))
        embed_kernel(v[ids], types(v), positions(v), word, scale, pos, typ, g, b, eps, out)
        v[out_name] = out
    return step


def linear(node, ctx):
    post = POST_ACTIVATIONS.get(node["attrs"].get("activation"))
    if post is not None:  # the pooler (tanh), DistilBERT's pre_classifier (relu)
        return activation_after(linear, node, ctx, post)
    prefix, act = node["params"]["linear"], node["attrs"].get("activation", "none")
    w = ctx.tensor(prefix + names.WEIGHT)
    if is_float_linear(node, w):
        return float_linear(node, ctx, act)
    from .kernels import gemm

    packed = gemm.pack_linear(w, ctx.tensors.get(prefix + names.SCALE), ctx.tensor(prefix + names.BIAS),
                              input_scale=ctx.tensors.get(prefix + names.INPUT_SCALE), kernels=ctx.native,
                              outliers=outliers_of(node, ctx))
    (x_name,), (out_name,) = node["inputs"], node["outputs"]
    ctx.packed[out_name] = packed  # for the fusion pass
    if node["attrs"].get("activations") == "int16":  # two int8 passes (gemm.qlinear_int16)
        ctx.two_pass.add(out_name)
        residual = gemm.residual_pass(packed)

        def step(v):
            x = v[x_name]
            v[out_name] = gemm.qlinear_int16(x, packed, residual, out=ctx.buffer(out_name, x.shape[0]),
                                             activation=act)
        return step

    def step(v):
        x = v[x_name]
        v[out_name] = gemm.qlinear(x, packed, out=ctx.buffer(out_name, x.shape[0]), activation=act)
    return step


def attention(node, ctx):
    from .kernels.attention_layout import make_scratch, scratch_size

    heads = int(node["attrs"]["num_heads"])
    (qkv_name, off_name), (out_name,) = node["inputs"], node["outputs"]
    head_dim = ctx.width[out_name] // heads
    if node["attrs"].get("window") is not None:
        return _attention_window(node, ctx, heads, head_dim)
    attention_kernel = ctx.kernel("attention", "attention")

    def step(v):
        qkv, offsets = v[qkv_name], v[off_name]
        ws = ctx.workspace()
        scratch = ws.attention_scratch.get(head_dim)
        if scratch is None or scratch.shape[1] < scratch_size(ws.longest, head_dim):
            scratch = ws.attention_scratch[head_dim] = make_scratch(max(ws.longest, 128), head_dim, ctx.kernel_threads)
        out = ctx.buffer(out_name, qkv.shape[0])
        attention_kernel(qkv, offsets, heads, out, scratch)
        v[out_name] = out
    return step


def _attention_window(node, ctx, heads, head_dim):
    from .kernels.attention_layout import per_thread, window_scratch_size

    attention_window = ctx.kernel("attention_window", "attention_window")

    window = int(node["attrs"]["window"])
    (qkv_name, off_name), (out_name,) = node["inputs"], node["outputs"]

    def step(v):
        qkv = v[qkv_name]
        ws = ctx.workspace()
        key = ("window", window, head_dim)
        scratch = ws.attention_scratch.get(key)
        if scratch is None:
            scratch = ws.attention_scratch[key] = per_thread(window_scratch_size(window, head_dim), ctx.kernel_threads)
        out = ctx.buffer(out_name, qkv.shape[0])
        attention_window(qkv, v[off_name], heads, window, out, scratch)
        v[out_name] = out
    return step


def rotary(node, ctx):
    from .kernels.attention_layout import inverse_frequencies

    rotary_kernel = ctx.kernel("rotary", "rotary")

    heads = int(node["attrs"]["num_heads"])
    (qkv_name, pos_name), (out_name,) = node["inputs"], node["outputs"]
    inv_freq = inverse_frequencies(ctx.width[out_name] // 3 // heads, float(node["attrs"]["theta"]))

    def step(v):
        qkv = v[qkv_name]
        out = ctx.buffer(out_name, qkv.shape[0])
        rotary_kernel(qkv, v[pos_name], heads, inv_freq, out)
        v[out_name] = out
    return step


def add(node, ctx):
    add_kernel = ctx.kernel("residual", "add")
    (x_name, r_name), (out_name,) = node["inputs"], node["outputs"]

    def step(v):
        x = v[x_name]
        out = ctx.buffer(out_name, x.shape[0])
        add_kernel(x, v[r_name], out)
        v[out_name] = out
    return step


def neighbours(node, ctx):
    kernel = ctx.kernel("residual", "neighbours")
    size = int(node["attrs"]["size"])
    (x_name, off_name), (out_name,) = node["inputs"], node["outputs"]

    def step(v):
        x = v[x_name]
        out = ctx.buffer(out_name, x.shape[0])
        kernel(x, v[off_name], size, out)
        v[out_name] = out
    return step


def mean_pool(node, ctx):
    mean_pool_kernel = ctx.kernel("residual", "mean_pool")
    (x_name, off_name), (out_name,) = node["inputs"], node["outputs"]

    def step(v):
        offsets = v[off_name]
        out = ctx.buffer(out_name, len(offsets) - 1)
        mean_pool_kernel(v[x_name], offsets, out)
        v[out_name] = out
    return step


def add_norm(node, ctx):
    add_norm_kernel = ctx.kernel("norm", "add_norm")
    g, b, eps = layer_norm_params(node, ctx)
    (x_name, r_name), (out_name,) = node["inputs"], node["outputs"]

    def step(v):
        x = v[x_name]
        out = ctx.buffer(out_name, x.shape[0])
        add_norm_kernel(x, v[r_name], g, b, eps, out)
        v[out_name] = out
    return step


def geglu(node, ctx):
    geglu_kernel = ctx.kernel("gated", "geglu")
    (x_name,), (out_name,) = node["inputs"], node["outputs"]

    def step(v):
        x = v[x_name]
        out = ctx.buffer(out_name, x.shape[0])
        geglu_kernel(x, out)
        v[out_name] = out
    return step


def first_token(node, ctx):
    (x_name, off_name), (out_name,) = node["inputs"], node["outputs"]

    def step(v):
        starts = v[off_name][:-1]
        v[out_name] = np.take(v[x_name], starts, axis=0, out=ctx.buffer(out_name, len(starts)))
    return step


def norm(node, ctx):
    layer_norm = ctx.kernel("heads", "layer_norm")
    g, b, eps = layer_norm_params(node, ctx)
    (x_name,), (out_name,) = node["inputs"], node["outputs"]

    def step(v):
        x = v[x_name]
        out = ctx.buffer(out_name, x.shape[0])
        layer_norm(x, g, b, eps, out)
        v[out_name] = out
    return step


def tied_linear(node, ctx):
    return linear(tied_as_linear(node, ctx), ctx)


def relative_attention(node, ctx):
    from .kernels.attention_layout import distance_bias, per_thread
    from .kernels.attention_layout import relative_scratch_size as scratch_size

    relative_kernel = ctx.kernel("relative", "relative_attention")

    heads, buckets, distance = (int(node["attrs"][k]) for k in ("num_heads", "num_buckets", "max_distance"))
    prefix = node["params"]["bias"]
    table = ctx.tensor(prefix + names.WEIGHT)
    (qkv_name, off_name), (out_name,) = node["inputs"], node["outputs"]
    head_dim = ctx.width[out_name] // heads

    def step(v):
        qkv, ws = v[qkv_name], ctx.workspace()
        # the bias by distance: once per model and length cap, shared by every layer's node
        by_distance, centre = ctx.derived.get(prefix, (None, -1))
        if centre + 1 < ws.longest:
            by_distance, centre = ctx.derived[prefix] = distance_bias(table, buckets, distance,
                                                                      max(ws.longest, 2 * (centre + 1), 128))
        key = ("relative", head_dim)
        scratch = ws.attention_scratch.get(key)
        if scratch is None or scratch.shape[1] < scratch_size(ws.longest, head_dim):
            scratch = ws.attention_scratch[key] = per_thread(scratch_size(max(ws.longest, 128), head_dim),
                                                             ctx.kernel_threads)
        out = ctx.buffer(out_name, qkv.shape[0])
        relative_kernel(qkv, v[off_name], heads, by_distance, centre, out, scratch)
        v[out_name] = out
    return step


def disentangled_attention(node, ctx):
    from .kernels import attention_layout as prep

    kernel = ctx.kernel("disentangled", "disentangled_attention")

    heads, buckets, max_rel = (int(node["attrs"][k]) for k in ("num_heads", "position_buckets",
                                                                "max_relative_positions"))
    pos_query, pos_key = disentangled_positions(node, ctx)  # per layer, once: (nh, 2 span, d)
    head_dim, span = pos_key.shape[2], pos_key.shape[1] // 2
    pos_query *= np.float32(prep.scale(head_dim))
    (qkv_name, off_name), (out_name,) = node["inputs"], node["outputs"]
    key = ("disentangled", buckets, max_rel, span)  # distance tables: shared by every layer's node

    def step(v):
        qkv, ws = v[qkv_name], ctx.workspace()
        c2p, p2c, centre = ctx.derived.get(key, (None, None, -1))
        if centre + 1 < ws.longest:
            c2p, p2c, centre = ctx.derived[key] = prep.distance_index(
                buckets, max_rel, span, max(ws.longest, 2 * (centre + 1), 128))
        scratch = ws.attention_scratch.get(("disentangled", head_dim))
        if scratch is None or scratch.shape[1] < prep.disentangled_scratch_size(ws.longest, head_dim):
            scratch = ws.attention_scratch[("disentangled", head_dim)] = prep.per_thread(
                prep.disentangled_scratch_size(max(ws.longest, 128), head_dim), ctx.kernel_threads)
        out = ctx.buffer(out_name, qkv.shape[0])
        kernel(qkv, v[off_name], heads, pos_key, pos_query, c2p, p2c, centre, out, scratch)
        v[out_name] = out
    return step


# The ops the native library runs (runtime/native/entries.py has their kernels); others use the JIT.
NATIVE_OPS = frozenset({"embed", "linear", "attention", "add_norm", "geglu", "first_token", "norm", "tied_linear",
                        "add", "mean_pool", "rotary", "relative_attention", "disentangled_attention",
                        "neighbours"})



def native_supports(node) -> bool:
    """Whether the native library has every kernel ``node``'s binder calls."""
    return node["op"] in NATIVE_OPS


BINDERS = {"embed": embed, "linear": linear, "attention": attention, "add_norm": add_norm, "geglu": geglu,
           "first_token": first_token, "norm": norm, "tied_linear": tied_linear,
           "rotary": rotary, "add": add, "mean_pool": mean_pool,
           "relative_attention": relative_attention, "disentangled_attention": disentangled_attention,
           "neighbours": neighbours}
