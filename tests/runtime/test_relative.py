"""The relative-bias attention op (MPNet): buckets vs transformers, kernel vs reference, and in a graph."""
from __future__ import annotations

import numpy as np
import pytest

from edgebert.errors import InvalidModelFile
from edgebert.format import validate_graph
from edgebert.runtime.executor import Executor, offsets_and_positions
from edgebert.runtime.kernels.relative import distance_bias, make_scratch, relative_attention
from edgebert.runtime.reference import attention_ref, relative_bias_ref, relative_buckets_ref

# float32 accumulation (kernel) vs float64 scores and context (reference) on unit-scale values.
KERNEL_ATOL = 2e-6
# Two layers of unnormalised random projections give peaky softmaxes (scores ~10) that magnify
# float32 rounding: the bound is relative to the outputs' scale (measured 3e-6 of it).
GRAPH_REL = 1e-5


@pytest.mark.parametrize("buckets, distance", [(32, 128), (16, 64), (8, 20)])
def test_buckets_match_transformers(buckets, distance):
    """Every distance up to 2048 both ways, float32 truncation included (e.g. 32 -> 11, not 12)."""
    torch = pytest.importorskip("torch")
    from transformers.models.mpnet.modeling_mpnet import MPNetEncoder

    d = np.arange(-2048, 2049)
    theirs = MPNetEncoder.relative_position_bucket(torch.tensor(d), num_buckets=buckets, max_distance=distance)
    np.testing.assert_array_equal(relative_buckets_ref(d, buckets, distance), theirs.numpy())


@pytest.mark.parametrize("lengths, heads, d", [([1], 2, 4), ([5, 17, 40], 4, 8), ([130, 3], 2, 64)])
def test_kernel_matches_reference(lengths, heads, d):
    rng = np.random.default_rng(len(lengths))
    offsets, _ = offsets_and_positions(lengths)
    qkv = rng.standard_normal((int(offsets[-1]), 3 * heads * d)).astype(np.float32)
    table = rng.standard_normal((32, heads)).astype(np.float32)
    by_distance, centre = distance_bias(table, 32, 128, max(lengths))
    out = np.empty((qkv.shape[0], heads * d), np.float32)
    relative_attention(qkv, offsets, heads, by_distance, centre, out, make_scratch(max(lengths), d))
    want = attention_ref(qkv, offsets, heads, position_bias=lambda n: relative_bias_ref(table, n, 32, 128))
    np.testing.assert_allclose(out, want, atol=KERNEL_ATOL, rtol=0)


def test_padding_keys_do_not_take_their_distances_bias():
    """A sequence of 5 tokens runs one 16-key block; keys 5-15 are padding whose scores would carry the
    bias of distances 5-15. Here those distances' bias is +100: unmasked, the row max would be theirs
    and every real weight would underflow to the same clamped value (a uniform softmax)."""
    rng = np.random.default_rng(7)
    heads, d, L = 2, 8, 5
    qkv = rng.standard_normal((L, 3 * heads * d)).astype(np.float32)
    far = relative_buckets_ref(np.arange(5, 16), 32, 128)
    table = np.zeros((32, heads), np.float32)
    table[np.setdiff1d(far, relative_buckets_ref(np.arange(-4, 5), 32, 128))] = 100.0
    by_distance, centre = distance_bias(table, 32, 128, L)
    offsets = np.array([0, L])
    out = np.empty((L, heads * d), np.float32)
    relative_attention(qkv, offsets, heads, by_distance, centre, out, make_scratch(L, d))
    want = attention_ref(qkv, offsets, heads, position_bias=lambda n: relative_bias_ref(table, n, 32, 128))
    np.testing.assert_allclose(out, want, atol=KERNEL_ATOL, rtol=0)


def test_kernel_refuses_a_sequence_longer_than_its_table():
    qkv = np.zeros((9, 6), np.float32)
    by_distance, centre = distance_bias(np.zeros((32, 1), np.float32), 32, 128, 8)
    with pytest.raises(ValueError, match="longer than the bias table"):
        relative_attention(qkv, np.array([0, 9]), 1, by_distance, centre, np.empty((9, 2), np.float32),
                           make_scratch(9, 2))


H, HEADS, V = 8, 2, 12
CONFIG = {"vocab_size": V, "hidden_size": H, "num_layers": 2, "num_heads": HEADS, "intermediate_size": 8,
          "max_position_embeddings": 16, "type_vocab_size": 2, "layer_norm_eps": 1e-12}


def _graph(table_shape=(32, HEADS), buckets=32):
    rng = np.random.default_rng(0)
    t = {"word.weight": rng.standard_normal((V, H)), "pos.weight": rng.standard_normal((16, H)),
         "type.weight": rng.standard_normal((2, H)), "n.weight": np.ones(H), "n.bias": np.zeros(H),
         "qkv.weight": rng.standard_normal((3 * H, H)), "qkv.bias": rng.standard_normal(3 * H),
         "rel.weight": rng.standard_normal(table_shape) * 2}
    tensors = {k: np.asarray(v, np.float32) for k, v in t.items()}
    nodes = [{"op": "embed", "inputs": ["input_ids", "token_type_ids", "position_ids"], "outputs": ["h0"],
              "params": {"word": "word", "position": "pos", "token_type": "type", "norm": "n"},
              "attrs": {"eps": 1e-12}}]
    for i in range(2):  # two layers read the one table
        nodes += [{"op": "linear", "inputs": [f"h{i}"], "outputs": [f"qkv{i}"], "params": {"linear": "qkv"},
                   "attrs": {"activation": "none"}},
                  {"op": "relative_attention", "inputs": [f"qkv{i}", "seq_offsets"], "outputs": [f"h{i + 1}"],
                   "params": {"bias": "rel"}, "attrs": {"num_heads": HEADS, "num_buckets": buckets,
                                                        "max_distance": 128}}]
    graph = {"inputs": ["input_ids", "token_type_ids", "position_ids", "seq_offsets"], "outputs": ["h2"],
             "nodes": nodes}
    return graph, tensors


def test_relative_attention_in_a_graph_on_both_backends():
    graph, tensors = _graph()
    widths = validate_graph(graph, tensors, CONFIG)
    ids = np.array([1, 5, 7, 2, 3, 9, 9, 4, 1, 0, 11], np.int32)
    offsets, positions = offsets_and_positions([3, 8])
    inputs = (ids, np.zeros_like(ids), positions, offsets)
    fast = Executor(graph, tensors, widths, backend="numba")
    got = fast.run(*inputs)["h2"]
    slow = Executor(graph, tensors, widths, backend="numpy").run(*inputs)["h2"]
    np.testing.assert_allclose(got, slow, rtol=0, atol=GRAPH_REL * np.abs(slow).max())
    assert list(fast.derived) == ["rel"]  # one bias by distance for both layers


@pytest.mark.parametrize("shape, buckets, message", [
    ((32, 3), 32, r"has shape \(32, 3\), expected \(>= 32, 2\)"),
    ((16, HEADS), 32, r"has shape \(16, 2\), expected \(>= 32, 2\)"),
    ((32, HEADS), 2, "num_buckets 2 must be >= 4"),
])
def test_bad_tables_are_refused(shape, buckets, message):
    graph, tensors = _graph(shape, buckets)
    with pytest.raises(InvalidModelFile, match=message):
        validate_graph(graph, tensors, CONFIG)
