"""ONNX lowerings of the attention-side ops for ``edgebert export`` (edgebert/onnx_export.py): plain and
windowed attention, MPNet's relative bias, DeBERTa's disentangled attention, rotary positions, and the
neighbours rows of DeBERTa-v2's convolution.

Activations are padded (B, T, W) with right padding. What depends only on positions (MPNet's buckets,
DeBERTa's c2p / p2c indices, rotary cos and sin) is computed here with the runtime's own references and
stored as constants for ``b.max_positions`` tokens, sliced to T at run time: the same buckets bit for
bit, and no float32 re-derivation of logs or angles in the graph. A longer input than that is refused
by ONNX Runtime (a shape mismatch), as our runtime refuses it.
"""
from __future__ import annotations

import math

import numpy as np

from . import names

MASKED = -1e9  # added to the scores of padding (or out-of-window) keys: exp() of it is 0 in float32


def _split_heads(b, qkv: str, nh: int) -> tuple[str, str, str]:
    """(B, T, 3H) -> q (B, nh, T, d), k^T (B, nh, d, T), v (B, nh, T, d)."""
    q, k, v = b.op("Split", [qkv], n_out=3, axis=2)  # opset 17: three equal parts
    heads = b.const(np.array([0, 0, nh, -1], np.int64))  # (B, T, nh, d)
    q = b.op("Transpose", [b.op("Reshape", [q, heads])], perm=[0, 2, 1, 3])
    k = b.op("Transpose", [b.op("Reshape", [k, heads])], perm=[0, 2, 3, 1])
    v = b.op("Transpose", [b.op("Reshape", [v, heads])], perm=[0, 2, 1, 3])
    return q, k, v


def _context(b, scores: str, v: str, out: str) -> None:
    """softmax over keys (padding keys masked) of (B, nh, T, T) scores, times V, as (B, T, H) ``out``."""
    probs = b.op("Softmax", [b.op("Add", [scores, b.mask_bias()])], axis=-1)
    ctx = b.op("Transpose", [b.op("MatMul", [probs, v])], perm=[0, 2, 1, 3])  # (B, T, nh, d)
    b.op("Reshape", [ctx, b.const(np.array([0, 0, -1], np.int64))], out)


def _seq_len(b, x: str) -> str:
    """T of a (B, T, ...) value, as a (1,) int64."""
    return b.op("Slice", [b.op("Shape", [x]), b.const(np.array([1], np.int64)), b.const(np.array([2], np.int64))])


def _square(b, table: np.ndarray, x: str, name: str) -> str:
    """A (P, P, ...) position table constant, sliced to (T, T, ...) for the T of ``x``."""
    t = _seq_len(b, x)
    zeros, axes = b.const(np.array([0, 0], np.int64)), b.const(np.array([0, 1], np.int64))
    return b.op("Slice", [b.const(table, name), zeros, b.op("Concat", [t, t], axis=0), axes])


def _positions(b) -> np.ndarray:
    return np.arange(b.max_positions)


def attention(b, node: dict) -> None:
    """Plain attention; with ``window``, query i sees only keys j with |i - j| <= window."""
    nh, window = node["attrs"]["num_heads"], node["attrs"].get("window")
    q, k, v = _split_heads(b, node["inputs"][0], nh)
    d = b.width(node["outputs"][0]) // nh
    scores = b.op("Div", [b.op("MatMul", [q, k]), b.const(np.float32(math.sqrt(d)))])  # (B, nh, T, T)
    if window is not None:  # |i - j| > window -> MASKED, computed from T (no P x P constant)
        t = b.op("Squeeze", [_seq_len(b, node["inputs"][0]), b.const(np.array([0], np.int64))])
        pos = b.op("Range", [b.const(np.int64(0)), t, b.const(np.int64(1))])
        rows = b.op("Unsqueeze", [pos, b.const(np.array([1], np.int64))])  # (T, 1)
        cols = b.op("Unsqueeze", [pos, b.const(np.array([0], np.int64))])  # (1, T)
        far = b.op("Greater", [b.op("Abs", [b.op("Sub", [rows, cols])]), b.const(np.int64(window))])
        scores = b.op("Add", [scores, b.op("Where", [far, b.const(np.float32(MASKED)), b.const(np.float32(0))])])
    _context(b, scores, v, node["outputs"][0])


def relative_attention(b, node: dict) -> None:
    """attention plus bias[bucket(j - i), head] (MPNet): buckets from the runtime's reference."""
    from .runtime.reference import relative_buckets_ref

    attrs, nh = node["attrs"], node["attrs"]["num_heads"]
    q, k, v = _split_heads(b, node["inputs"][0], nh)
    d = b.width(node["outputs"][0]) // nh
    pos = _positions(b)
    buckets = relative_buckets_ref(pos[None, :] - pos[:, None], attrs["num_buckets"],
                                   attrs["max_distance"]).astype(np.int32)  # (P, P)
    prefix = node["params"]["bias"] + names.WEIGHT
    bias = b.op("Gather", [b.const(b.tensors[prefix], prefix), _square(b, buckets, node["inputs"][0],
                                                                          prefix + ".buckets")])  # (T, T, nh)
    scores = b.op("Div", [b.op("MatMul", [q, k]), b.const(np.float32(math.sqrt(d)))])
    _context(b, b.op("Add", [scores, b.op("Transpose", [bias], perm=[2, 0, 1])]), v, node["outputs"][0])


def disentangled_attention(b, node: dict) -> None:
    """DeBERTa-v2/v3: (q.k + q.Pk[c2p] + k.Pq[p2c]) / sqrt(3 d); Pq, Pk projected here once, as a
    reader binds the node (runtime/backend_common.disentangled_positions)."""
    from .runtime.backend_common import disentangled_positions
    from .runtime.reference import log_buckets_ref

    attrs, nh, x = node["attrs"], node["attrs"]["num_heads"], node["inputs"][0]
    pos_query, pos_key = disentangled_positions(node, _Tensors(b.tensors))  # (nh, 2 span, d)
    span, d = pos_key.shape[1] // 2, pos_key.shape[2]
    pos = _positions(b)
    r = log_buckets_ref(pos[:, None] - pos[None, :], attrs["position_buckets"], attrs["max_relative_positions"])
    c2p_index = np.clip(r + span, 0, 2 * span - 1).astype(np.int32)  # (P, P): [query, key]
    p2c_index = np.clip(-r + span, 0, 2 * span - 1).astype(np.int32)  # (P, P): [key, query]
    tables = f"disentangled.{attrs['position_buckets']}.{attrs['max_relative_positions']}"  # every layer's
    q, k, v = _split_heads(b, x, nh)
    out = node["outputs"][0]
    qk = b.op("MatMul", [q, k])  # (B, nh, T, T)
    full = b.op("Shape", [qk])
    c2p = b.op("GatherElements", [b.op("MatMul", [q, b.const(np.ascontiguousarray(pos_key.transpose(0, 2, 1)),
                                                             out + ".pos_key_t")]),
                                  b.op("Expand", [_square(b, c2p_index, x, tables + ".c2p"), full])], axis=3)
    k_rows = b.op("Transpose", [k], perm=[0, 1, 3, 2])  # (B, nh, T, d)
    p2c = b.op("GatherElements", [b.op("MatMul", [k_rows, b.const(np.ascontiguousarray(pos_query.transpose(0, 2, 1)),
                                                                  out + ".pos_query_t")]),
                                  b.op("Expand", [_square(b, p2c_index, x, tables + ".p2c"), full])], axis=3)
    total = b.op("Add", [b.op("Add", [qk, c2p]), b.op("Transpose", [p2c], perm=[0, 1, 3, 2])])
    _context(b, b.op("Div", [total, b.const(np.float32(math.sqrt(3 * d)))]), v, out)


class _Tensors:
    """What backend_common.disentangled_positions reads of a binding context."""

    def __init__(self, tensors: dict):
        self.tensors = tensors

    def tensor(self, name: str):
        return self.tensors[name]


def rotary(b, node: dict) -> None:
    """q and k rotated by position p * theta^(-2i/d) (rotate_half), v copied; cos and sin constants
    computed in float64 as the reference does, positions 0..T-1 (right padding: each row's own index)."""
    x, nh, theta = node["inputs"][0], node["attrs"]["num_heads"], node["attrs"]["theta"]
    H = b.width(node["outputs"][0]) // 3
    d = H // nh
    inv_freq = 1.0 / theta ** (np.arange(0, d, 2, dtype=np.float64) / d)
    angle = np.arange(b.max_positions, dtype=np.float64)[:, None] * inv_freq[None, :]  # (P, d/2)
    t, zero, axis = _seq_len(b, x), b.const(np.array([0], np.int64)), b.const(np.array([0], np.int64))
    tag = f"rotary.{theta:g}.{d}"
    cos, sin = (b.op("Slice", [b.const(f(angle).astype(np.float32)[:, None, :], f"{tag}.{f.__name__}"), zero, t, axis])
                for f in (np.cos, np.sin))  # (T, 1, d/2)
    q, k, v = b.op("Split", [x], n_out=3, axis=2)
    rotated = []
    for part in (q, k):
        heads = b.op("Reshape", [part, b.const(np.array([0, 0, nh, d], np.int64))])  # (B, T, nh, d)
        lo, hi = b.op("Split", [heads], n_out=2, axis=3)
        new_lo = b.op("Sub", [b.op("Mul", [lo, cos]), b.op("Mul", [hi, sin])])
        new_hi = b.op("Add", [b.op("Mul", [hi, cos]), b.op("Mul", [lo, sin])])
        rotated.append(b.op("Reshape", [b.op("Concat", [new_lo, new_hi], axis=3),
                                        b.const(np.array([0, 0, H], np.int64))]))
    b.op("Concat", [*rotated, v], node["outputs"][0], axis=2)


def neighbours(b, node: dict) -> None:
    """Row t -> rows t - size//2 .. t + size//2 side by side, zeros past the sequence's ends: padding rows
    zeroed by the mask, then the sequence zero-padded by size//2 at both ends and sliced ``size`` times."""
    x, size = node["inputs"][0], node["attrs"]["size"]
    half = size // 2
    padded = b.op("Pad", [b.op("Mul", [x, b.mask_rows()]), b.const(np.array([0, half, 0, 0, half, 0], np.int64))])
    t, axis = _seq_len(b, x), b.const(np.array([1], np.int64))
    parts = [b.op("Slice", [padded, b.const(np.array([j], np.int64)), b.op("Add", [t, b.const(np.array([j], np.int64))]),
                            axis]) for j in range(size)]
    b.op("Concat", parts, node["outputs"][0], axis=2)


LOWER = {"attention": attention, "relative_attention": relative_attention,
         "disentangled_attention": disentangled_attention, "rotary": rotary, "neighbours": neighbours}
