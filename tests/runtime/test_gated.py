"""The gated feed-forward op (geglu): kernel vs reference, and in a graph on both backends."""
from __future__ import annotations

import numpy as np
import pytest

from edgebert.errors import InvalidModelFile
from edgebert.format import validate_graph
from edgebert.runtime.executor import Executor, offsets_and_positions
from edgebert.runtime.kernels.gated import geglu
from edgebert.runtime.kernels.gemm_portable import GELU_MAX_ERR
from edgebert.runtime.reference import geglu_ref

# The kernel's GELU is within GELU_MAX_ERR * max(1, |y|) of erf GELU (gemm_portable);
# the gate multiplies that error, and one float32 rounding of the product adds ~1 ulp.
PRODUCT_RTOL = 2 * np.finfo(np.float32).eps
# In a float32 graph both backends run the same float linears; only geglu differs, by the
# GELU error above (~1e-6 on unit-scale values) carried through one (F -> H) linear.
GRAPH_ATOL = 1e-5


@pytest.mark.parametrize("rows, f", [(1, 1), (7, 64), (130, 37)])
def test_geglu_kernel_matches_reference(rows, f):
    x = (np.random.default_rng(rows).standard_normal((rows, 2 * f)) * 3).astype(np.float32)
    out = np.empty((rows, f), np.float32)
    geglu(x, out)
    want = geglu_ref(x)
    bound = GELU_MAX_ERR * np.maximum(1, np.abs(x[:, :f])) * np.abs(x[:, f:]) + PRODUCT_RTOL * np.abs(want)
    assert np.all(np.abs(out - want) <= bound)


H, F, V = 8, 6, 12
CONFIG = {"vocab_size": V, "hidden_size": H, "num_layers": 1, "num_heads": 2, "intermediate_size": F,
          "max_position_embeddings": 16, "type_vocab_size": 2, "layer_norm_eps": 1e-12}


def _graph_and_tensors(up_rows: int):
    rng = np.random.default_rng(0)
    t = {"word.weight": rng.standard_normal((V, H)), "pos.weight": rng.standard_normal((16, H)),
         "type.weight": rng.standard_normal((2, H)), "n.weight": np.ones(H), "n.bias": np.zeros(H),
         "up.weight": rng.standard_normal((up_rows, H)), "up.bias": rng.standard_normal(up_rows),
         "down.weight": rng.standard_normal((H, F)), "down.bias": rng.standard_normal(H)}
    tensors = {k: np.asarray(v, np.float32) for k, v in t.items()}
    nodes = [{"op": "embed", "inputs": ["input_ids", "token_type_ids", "position_ids"], "outputs": ["h0"],
              "params": {"word": "word", "position": "pos", "token_type": "type", "norm": "n"},
              "attrs": {"eps": 1e-12}},
             {"op": "linear", "inputs": ["h0"], "outputs": ["up"], "params": {"linear": "up"},
              "attrs": {"activation": "none"}},
             {"op": "geglu", "inputs": ["up"], "outputs": ["gated"], "params": {}, "attrs": {}},
             {"op": "linear", "inputs": ["gated"], "outputs": ["down"], "params": {"linear": "down"},
              "attrs": {"activation": "none"}}]
    graph = {"inputs": ["input_ids", "token_type_ids", "position_ids", "seq_offsets"], "outputs": ["down"],
             "nodes": nodes}
    return graph, tensors


def test_geglu_in_a_graph_on_both_backends():
    graph, tensors = _graph_and_tensors(2 * F)
    widths = validate_graph(graph, tensors, CONFIG)
    assert widths["gated"] == F
    ids = np.array([1, 5, 7, 2, 3], np.int32)
    offsets, positions = offsets_and_positions([3, 2])
    inputs = (ids, np.zeros_like(ids), positions, offsets)
    fast = Executor(graph, tensors, widths, backend="numba").run(*inputs)["down"]
    slow = Executor(graph, tensors, widths, backend="numpy").run(*inputs)["down"]
    np.testing.assert_allclose(fast, slow, rtol=0, atol=GRAPH_ATOL)


def test_geglu_refuses_an_odd_width():
    graph, tensors = _graph_and_tensors(2 * F + 1)
    with pytest.raises(InvalidModelFile, match="graph node 2 \\('geglu'\\): input width 13 must be even"):
        validate_graph(graph, tensors, CONFIG)
