"""Build the corpus of malformed ONNX files in tests/data/malformed_onnx/.

Run ``python tests/data/make_malformed_onnx.py`` (needs the onnx package) to (re)write it. Each file is a
few nodes, not a BERT: ``edgebert convert`` must refuse it with InvalidModelFile naming the node (and the
reason in ``CASES``) before it maps anything. Deterministic: the same bytes every run (tests check the
committed files against this script).
"""
from __future__ import annotations

import os
import sys

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "malformed_onnx")

# file stem -> (what the refusal says, the node it names or None for a file-level refusal)
CASES = {
    "unknown_domain": ("domain 'com.example.evil' is unknown", "evil"),
    "unknown_ms_op": ("com.microsoft::FusedMatMul is not one of the ONNX Runtime ops we read", "fused"),
    "unknown_op": ("'NotAnOp' is not an ONNX op", "bogus"),
    "op_newer_than_opset": ("'Gelu' does not exist at opset 17", "gelu"),
    "opset_too_new": ("default-domain opset 9999 is not one we know", None),
    "opset_too_old": ("default-domain opset 1 is not one we know", None),
    "ms_opset_wrong": ("com.microsoft opset 7 is not 1", "attention"),
    "cycle": ("is produced later by node 'second'", "first"),
    "dangling_input": ("input 'ghost' is produced by no node", "add"),
    "produced_twice": ("output 'y' is already defined", "again"),
    "output_from_nowhere": ("graph output 'nowhere' is produced by no node", None),
    # sizes are checked before any allocation: the declared shape against the bytes present
    "initializer_dims_lie": ("raw_data size (4 bytes) is too small for the declared shape", None),
    "negative_dim": ("Negative dimension value (tensor name: w)", None),
}


def build(stem: str):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])
    opsets = {"": 17}
    nodes = [helper.make_node("Identity", ["x"], ["y"], name="identity")]
    outputs = [y]
    if stem == "unknown_domain":
        nodes = [helper.make_node("Backdoor", ["x"], ["y"], name="evil", domain="com.example.evil")]
        opsets["com.example.evil"] = 1
    elif stem == "unknown_ms_op":
        nodes = [helper.make_node("FusedMatMul", ["x", "x"], ["y"], name="fused", domain="com.microsoft")]
        opsets["com.microsoft"] = 1
    elif stem == "unknown_op":
        nodes = [helper.make_node("NotAnOp", ["x"], ["y"], name="bogus")]
    elif stem == "op_newer_than_opset":  # Gelu arrived in opset 20
        nodes = [helper.make_node("Gelu", ["x"], ["y"], name="gelu")]
    elif stem in ("opset_too_new", "opset_too_old"):
        opsets[""] = 9999 if stem == "opset_too_new" else 1
    elif stem == "ms_opset_wrong":
        nodes = [helper.make_node("Attention", ["x", "x"], ["y"], name="attention", domain="com.microsoft",
                                  num_heads=1)]
        opsets["com.microsoft"] = 7
    elif stem == "cycle":  # first reads second's output, second reads first's
        nodes = [helper.make_node("Add", ["x", "b"], ["a"], name="first"),
                 helper.make_node("Relu", ["a"], ["b"], name="second"),
                 helper.make_node("Identity", ["a"], ["y"], name="last")]
    elif stem == "dangling_input":
        nodes = [helper.make_node("Add", ["x", "ghost"], ["y"], name="add")]
    elif stem == "produced_twice":
        nodes = [helper.make_node("Identity", ["x"], ["y"], name="once"),
                 helper.make_node("Relu", ["x"], ["y"], name="again")]
    elif stem == "output_from_nowhere":
        outputs = [y, helper.make_tensor_value_info("nowhere", TensorProto.FLOAT, [2, 4])]
    initializer = []
    if stem in ("initializer_dims_lie", "negative_dim"):  # y = x + w, w claiming 10^12 floats or (-3, 4)
        w = onnx.TensorProto(name="w", data_type=TensorProto.FLOAT, raw_data=b"\0" * (4 if stem[0] == "i" else 48))
        w.dims.extend([10**6, 10**6] if stem[0] == "i" else [-3, 4])
        initializer = [w]
        nodes = [helper.make_node("Add", ["x", "w"], ["y"], name="add")]
    graph = helper.make_graph(nodes, stem, [x], outputs, initializer=initializer)
    model = helper.make_model(graph, producer_name="edgebert-malformed",
                              opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()])
    model.ir_version = 8
    return model.SerializeToString(deterministic=True)


def main() -> int:
    os.makedirs(HERE, exist_ok=True)
    for stem in CASES:
        with open(os.path.join(HERE, stem + ".onnx"), "wb") as f:
            f.write(build(stem))
    print(f"wrote {len(CASES)} files to {HERE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
