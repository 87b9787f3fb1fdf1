"""Fusion for the ``numba`` backend: each feed-forward block as one row-panel kernel.

The rule, as data: ``linear`` (int8, GELU) -> ``linear`` (int8 or int16
activations, no activation) -> ``add_norm`` with the block's input as residual
becomes one ``gemm.ffn`` step, where the kernel path's record
(runtime/kernels/isa.py) has a fused kernel and the two intermediates are read
by nothing else and are not graph outputs. The fused step computes exactly
what the three nodes compute (tests compare them), so the graph's references
still describe it.

(The attention output, linear -> add_norm, fused the same way, was within
+-3 % of unfused on MiniLM at 1 and 2 threads: not kept.)
"""
from __future__ import annotations

FFN_PATTERN = (("linear", "gelu"), ("linear", "none"), ("add_norm", None))  # (op, activation)


def fuse(nodes: list[dict], steps: list, io: list, outputs: list[str], ctx) -> tuple[list, list, set]:
    """(steps, io, values they no longer produce) with each matching block fused;
    otherwise the lists equal the unfused ones."""
    steps, io, away = list(steps), list(io), set()
    readers: dict[str, int] = {}
    for node in nodes:
        for name in node["inputs"]:
            readers[name] = readers.get(name, 0) + 1
    outputs = set(outputs)

    def private(value, reader):  # read only by ``reader``, not a graph output, a fusable int8 linear's
        return (reader["inputs"][0] == value and readers.get(value) == 1 and value not in outputs
                and value in ctx.packed and ctx.packed[value].isa.ffn is not None
                and ctx.packed[value].outliers is None)  # the fused kernel has no float32 channels

    def matches_pattern(block):
        return all(n["op"] == op and (act is None or n["attrs"].get("activation", "none") == act)
                   for n, (op, act) in zip(block, FFN_PATTERN))

    found, i = [], 0  # (first node index, fused step, values only it holds)
    while i < len(nodes) - 2:
        a, b, c = block = nodes[i:i + 3]
        if (matches_pattern(block) and private(a["outputs"][0], b) and private(b["outputs"][0], c)
                and a["outputs"][0] not in ctx.two_pass):
            h, d = a["outputs"][0], b["outputs"][0]
            found.append((i, ffn_step(a, c, ctx.packed[h], ctx.packed[d], d in ctx.two_pass, steps[i:i + 3], ctx),
                          [h, d]))
            i += 3
        else:
            i += 1
    for i, step, inner in reversed(found):  # from the end, so earlier indices stay valid
        norm = nodes[i + 2]
        steps[i:i + 3] = [step]
        # the intermediates stay listed: they get (lazily allocated) slots for the unfused fallback
        io[i:i + 3] = [([nodes[i]["inputs"][0], norm["inputs"][1]], list(norm["outputs"]) + inner)]
        away.update(inner)
    return steps, io, away


def ffn_step(up_node, norm_node, up, down, two_pass, unfused, ctx):
    """One step for a feed-forward block: ``gemm.ffn``, or the unfused steps where
    the input has too few rows for one panel per thread."""
    import numba

    from .backend_common import layer_norm_params
    from .kernels import gemm

    g, b, eps = layer_norm_params(norm_node, ctx)
    (x_name,), r_name, (out_name,) = up_node["inputs"], norm_node["inputs"][1], norm_node["outputs"]

    def step(v):
        x = v[x_name]
        panel = gemm.panel_rows((up, down), x.shape[0], numba.get_num_threads())
        if not panel:
            for s in unfused:
                s(v)
            return
        v[out_name] = gemm.ffn(x, up, down, v[r_name], g, b, eps, ctx.buffer(out_name, x.shape[0]), panel,
                               two_pass)
    return step
