"""Checks an ONNX graph passes before anything reads it: opsets we know, ops we know in domains we
know, every node's inputs defined before it (no cycles, nothing dangling), every tensor produced once.
A file that fails gets ``InvalidModelFile`` naming the node (onnx.checker runs after these, on what
passes, and skips com.microsoft nodes; our own checks do not)."""
from __future__ import annotations

from edgebert.errors import InvalidModelFile

from .onnx_fused import EXPAND, MS

MIN_OPSET = 9  # older exports predate everything a BERT export uses (Erf, dynamic Slice)
MS_OPSET = 1  # com.microsoft's only version


def check_structure(model, where: str) -> None:
    import onnx

    def refuse(message: str, node=None) -> None:
        at = f" at node {node.name!r} ({node.domain or 'ai.onnx'}::{node.op_type})" if node is not None else ""
        raise InvalidModelFile(f"{where}{at}: {message}")

    max_opset = onnx.defs.onnx_opset_version()
    opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    std = opsets.get("ai.onnx")
    if std is None or not MIN_OPSET <= std <= max_opset:
        refuse(f"default-domain opset {std} is not one we know ({MIN_OPSET}..{max_opset})")
    g = model.graph
    defined = {t.name for t in g.initializer} | {i.name for i in g.input}
    produced_by = {o: n for n in g.node for o in n.output if o}
    for n in g.node:
        domain = n.domain or "ai.onnx"
        if domain == MS:
            if opsets.get(MS) != MS_OPSET:
                refuse(f"{MS} opset {opsets.get(MS)} is not {MS_OPSET}", n)
            if n.op_type not in EXPAND:
                refuse(f"{MS}::{n.op_type} is not one of the ONNX Runtime ops we read: {', '.join(sorted(EXPAND))}",
                       n)
        elif domain != "ai.onnx":
            refuse(f"domain {domain!r} is unknown (we read ai.onnx and ONNX Runtime's {MS})", n)
        elif not onnx.defs.has(n.op_type, ""):
            refuse(f"{n.op_type!r} is not an ONNX op", n)
        elif not _has_version(n.op_type, std):
            refuse(f"{n.op_type!r} does not exist at opset {std}", n)
        for i in n.input:
            if i and i not in defined:
                later = produced_by.get(i)
                refuse(f"input {i!r} is produced later by node {later.name!r}: the graph is not topologically "
                       "sorted or has a cycle" if later is not None else f"input {i!r} is produced by no node "
                       "and is neither a graph input nor an initializer (dangling)", n)
        for o in n.output:
            if o and o in defined:
                refuse(f"output {o!r} is already defined (each tensor is produced once)", n)
            defined.add(o)
    for o in g.output:
        if o.name not in defined:
            refuse(f"graph output {o.name!r} is produced by no node")


def _has_version(op: str, version: int) -> bool:
    import onnx
    try:
        onnx.defs.get_schema(op, version, "")
        return True
    except onnx.defs.SchemaError:
        return False
