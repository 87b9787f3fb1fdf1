"""The op schema (edgebert/ops.py) against everything that must agree with it:
both backends' implementations, docs/format.md's op table, buffer planning, fusion."""
from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from edgebert import ops
from edgebert.runtime import backend_numba, backend_numpy, fusion, plan

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("backend", [backend_numpy, backend_numba], ids=["numpy", "numba"])
def test_every_op_has_an_implementation_in_every_backend(backend):
    """The numpy backend's binders are the references; the numba one the fast kernels."""
    assert set(backend.BINDERS) == set(ops.OPS)


def test_schema_entries_are_well_formed():
    for name, schema in ops.OPS.items():
        assert schema.version >= 1, name
        assert set(schema.inputs) <= {ops.IDS, ops.OFFSETS, ops.ROWS}, name
        assert all(isinstance(a, ops.Attr) for a in schema.attrs.values()), name
        for attr in schema.attrs.values():
            assert all(attr.check(c) for c in attr.choices), name
            assert not attr.check(object())


def _doc_op_rows() -> dict[str, str]:
    text = (REPO / "docs" / "format.md").read_text()
    graph = text[text.index("## Graph"):text.index("## Heads")]
    return {m.group(1): m.group(0) for m in re.finditer(r"^\| `(\w+)` \|.*$", graph, re.M)}


def test_format_doc_op_table_matches_the_schema():
    rows = _doc_op_rows()
    assert set(rows) == set(ops.OPS)
    for name, schema in ops.OPS.items():
        row = rows[name]
        for word in (*schema.params, *schema.attrs):
            assert f"`{word}`" in row, f"docs/format.md's row for {name} does not name {word!r}"
        for attr in schema.attrs.values():
            for value in attr.choices:
                assert f"`{value}`" in row, f"docs/format.md's row for {name} does not list {value!r}"


def test_per_sequence_values_follow_the_schema():
    nodes = [{"op": "linear", "inputs": ["h"], "outputs": ["a"]},
             {"op": "first_token", "inputs": ["a", "seq_offsets"], "outputs": ["cls"]},
             {"op": "linear", "inputs": ["cls"], "outputs": ["pooled"]},
             {"op": "linear", "inputs": ["a"], "outputs": ["tokens"]}]
    assert ops.per_sequence_values(nodes) == {"cls", "pooled"}


@pytest.mark.parametrize("port, name, message", [
    (ops.ROWS, "input_ids", "is a graph input, not an activation"),
    (ops.IDS, "h0", "per-token graph id input"),
    (ops.OFFSETS, "position_ids", "must be seq_offsets"),
])
def test_ports_refuse_the_wrong_kind_of_value(port, name, message):
    schema = ops.OpSchema(1, (port,), (), {}, lambda node, ctx: [1])
    kinds = {"h0": ops.ROWS, **{n: ops.input_kind(n) for n in ops.GRAPH_INPUTS}}
    with pytest.raises(ValueError, match=message):
        ops.check_ports(schema, [name], kinds)


# ---- buffer planning (pure Python) ---------------------------------------------
def test_slot_plan_reuses_dead_slots_of_the_same_width_only():
    io = [(["x"], ["a"]), (["a"], ["b"]), (["b"], ["c"]), (["c", "b"], ["d"]), (["d"], ["e"])]
    widths = {"a": 4, "b": 4, "c": 8, "d": 4, "e": 4}
    slots = plan.slot_plan(io, widths, ["e"])
    for inputs, outputs in io:  # an output never shares a slot of its width with a live input
        for out in outputs:
            assert all(slots[out] != slots[i] or widths[i] != widths[out] for i in inputs if i in slots)
    assert slots["d"] == slots["a"]  # a is dead after step 1, same width
    assert len({slots[n] for n in widths if widths[n] == 4}) == 2
    assert plan.last_step(io, ["c"]) == 2


def test_slot_plan_keeps_wanted_values_alive_to_the_end():
    io = [(["x"], ["a"]), (["a"], ["b"]), (["b"], ["c"])]
    slots = plan.slot_plan(io, {"a": 4, "b": 4, "c": 4}, ["a", "c"])
    assert slots["c"] != slots["a"]


# ---- the feed-forward fusion rule, on a fake backend -------------------------------
def _ffn_nodes(activation="gelu"):
    return [{"op": "linear", "inputs": ["n0"], "outputs": ["up0"], "params": {"linear": "u"},
             "attrs": {"activation": activation}},
            {"op": "linear", "inputs": ["up0"], "outputs": ["down0"], "params": {"linear": "d"},
             "attrs": {"activation": "none"}},
            {"op": "add_norm", "inputs": ["down0", "n0"], "outputs": ["h1"], "params": {"norm": "f"},
             "attrs": {"eps": 1e-12}}]


def _fake_ctx(fusable=True, outliers=None):
    isa = SimpleNamespace(ffn=object() if fusable else None)  # the path's record: a fused kernel or none
    tensors = {"f.weight": None, "f.bias": None}
    return SimpleNamespace(packed={"up0": SimpleNamespace(isa=isa, outliers=outliers),
                                   "down0": SimpleNamespace(isa=isa, outliers=None)},
                           two_pass=set(), tensors=tensors, tensor=tensors.__getitem__)


def test_fusion_replaces_a_feed_forward_block_by_one_step():
    nodes = _ffn_nodes()
    steps, io = ["up", "down", "norm"], [(n["inputs"], n["outputs"]) for n in nodes]
    fused, fused_io, away = fusion.fuse(nodes, steps, io, ["h1"], _fake_ctx())
    assert len(fused) == 1 and callable(fused[0])
    assert fused_io == [(["n0", "n0"], ["h1", "up0", "down0"])]
    assert away == {"up0", "down0"}


@pytest.mark.parametrize("why", ["no fused kernel", "intermediate is an output", "not gelu", "outlier channels"])
def test_fusion_leaves_blocks_it_cannot_fuse(why):
    nodes = _ffn_nodes("none" if why == "not gelu" else "gelu")
    outputs = ["h1", "up0"] if why == "intermediate is an output" else ["h1"]
    steps, io = ["up", "down", "norm"], [(n["inputs"], n["outputs"]) for n in nodes]
    ctx = _fake_ctx(why != "no fused kernel", outliers=(0, 0) if why == "outlier channels" else None)
    fused, fused_io, away = fusion.fuse(nodes, steps, io, outputs, ctx)
    assert (fused, fused_io, away) == (steps, io, set())
