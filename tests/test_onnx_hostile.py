"""Hostile ONNX files: the committed corpus (tests/data/malformed_onnx, built by make_malformed_onnx.py) is
refused with InvalidModelFile naming the node and nothing is written; a structural fuzzer mutates a tiny
BERT export (and ONNX Runtime's fused form of it) and every mutant either converts or is refused with one
of our errors, never another exception."""
from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

from edgebert.errors import EdgebertError, InvalidModelFile

onnx = pytest.importorskip("onnx")

DATA = Path(__file__).parent / "data"
sys.path.insert(0, str(DATA))
from make_malformed_onnx import CASES, build  # noqa: E402

MUTANTS = 24  # per source graph: about 0.1 s each (most are refused before mapping)
OPS = ("Add", "Mul", "Relu", "Softmax", "MatMul", "Identity", "Gelu", "NotAnOp", "Attention", "BiasGelu")


@pytest.mark.parametrize("stem", sorted(CASES))
def test_malformed_onnx_corpus_is_refused_naming_the_node(tmp_path, stem):
    from edgebert.converters import convert

    path = DATA / "malformed_onnx" / f"{stem}.onnx"
    assert path.read_bytes() == build(stem), f"{path} differs from make_malformed_onnx.py's: rebuild the corpus"
    message, node = CASES[stem]
    with pytest.raises(InvalidModelFile) as refused:
        convert(path, tmp_path / "x.edgebert", dtype="float32")
    assert message in str(refused.value) and str(path) in str(refused.value)
    if node is not None:
        assert f"at node {node!r}" in str(refused.value)
    assert not (tmp_path / "x.edgebert").exists()


@pytest.fixture(scope="module")
def sources(tmp_path_factory, minilm_dir):
    pytest.importorskip("torch")
    optimizer = pytest.importorskip("onnxruntime.transformers.optimizer")
    from onnx_models import export, tiny_torch_model

    plain = export(tiny_torch_model("BertModel", num_hidden_layers=1), tmp_path_factory.mktemp("plain"), minilm_dir)
    fused_dir = tmp_path_factory.mktemp("fused")
    optimizer.optimize_model(str(plain), model_type="bert", num_heads=4, hidden_size=32).save_model_to_file(
        str(fused_dir / "model.onnx"))
    return {"plain": plain, "fused": fused_dir / "model.onnx"}


def _mutate(model, rng: random.Random) -> str:
    """One structural change: rewire an input, change an op or its domain, drop a node, swap two nodes."""
    nodes = model.graph.node
    names = [o for n in nodes for o in n.output] + [i.name for i in model.graph.input] + ["ghost"]
    k = rng.randrange(len(nodes))
    n = nodes[k]
    kind = rng.choice(["rewire", "op", "domain", "drop", "swap", "attr"])
    if kind == "rewire" and n.input:
        n.input[rng.randrange(len(n.input))] = rng.choice(names)
    elif kind == "op":
        n.op_type = rng.choice(OPS)
    elif kind == "domain":
        n.domain = rng.choice(["", "com.microsoft", "ai.onnx.ml", "org.example"])
    elif kind == "drop":
        del nodes[k]
    elif kind == "swap":
        j = rng.randrange(len(nodes))
        a, b = onnx.NodeProto(), onnx.NodeProto()
        a.CopyFrom(nodes[k])
        b.CopyFrom(nodes[j])
        nodes[k].CopyFrom(b)
        nodes[j].CopyFrom(a)
    elif kind == "attr" and n.attribute:
        a = n.attribute[rng.randrange(len(n.attribute))]
        if a.type == onnx.AttributeProto.INT:
            a.i = rng.choice([-1, 0, 2, 7, 10**9])
        elif a.type == onnx.AttributeProto.FLOAT:
            a.f = rng.choice([0.0, -1.0, float("nan"), 1e30])
    return f"{kind} at node {k} ({n.op_type})"


@pytest.mark.parametrize("which", ["plain", "fused"])
def test_structural_fuzzer_only_raises_our_errors(sources, tmp_path, which):
    import shutil

    from edgebert.converters import convert

    src = sources[which]
    rng = random.Random(f"onnx-{which}")
    folder = tmp_path / "m"
    shutil.copytree(src.parent, folder)
    outcomes = {"converted": 0, "refused": 0}
    for i in range(MUTANTS):
        model = onnx.load(str(src))
        what = _mutate(model, rng)
        onnx.save_model(model, str(folder / "model.onnx"))
        out = tmp_path / f"{i}.edgebert"
        try:
            convert(folder / "model.onnx", out, dtype="float32")
            outcomes["converted"] += 1
        except EdgebertError as e:
            outcomes["refused"] += 1
            assert str(folder / "model.onnx") in str(e), what
            assert not out.exists(), what
        except Exception as e:  # anything else is a crash in the importer
            pytest.fail(f"mutant {i} ({what}) raised {type(e).__name__}: {e}")
    assert outcomes["refused"] > 0, outcomes


def _nan_epsilon(model) -> None:
    n = next(n for n in model.graph.node if n.op_type == "LayerNormalization")
    next(a for a in n.attribute if a.name == "epsilon").f = float("nan")


def _bad_perm(model) -> None:
    """A MatMul weight read through a Transpose whose perm does not fit the constant."""
    from onnx import helper
    n = next(n for n in model.graph.node if n.op_type == "MatMul" and
             any(t.name == n.input[1] for t in model.graph.initializer))
    t = helper.make_node("Transpose", [n.input[1]], [n.input[1] + "_t"], name="bad_perm", perm=[0, 1, 2])
    n.input[1] = t.output[0]
    model.graph.node.insert(list(model.graph.node).index(n), t)


def _computed_zero_point(model) -> None:
    n = next(n for n in model.graph.node if n.op_type == "MatMulInteger")
    n.input[3] = n.input[2]  # the activations' computed zero point where the weights' constant one was


@pytest.mark.parametrize("case, source, match", [
    ("nan_epsilon", "plain", r"at node .*LayerNorm epsilon nan is not a small positive number"),
    ("bad_perm", "plain", r"at node 'bad_perm' \(Transpose\): cannot compute the constant"),
    ("computed_zero_point", "quantized", r"at node .*MatMulInteger.*zero point .* must be a constant"),
])
def test_fuzzer_findings_are_refused(sources, tmp_path, case, source, match):
    """Mutants that crashed the importer once (ValueError, AttributeError) now get our errors."""
    import shutil

    from edgebert.converters import convert
    from edgebert.errors import UnsupportedModel

    src = sources["plain"]
    folder = tmp_path / "m"
    shutil.copytree(src.parent, folder)
    path = folder / "model.onnx"
    if source == "quantized":
        ort_q = pytest.importorskip("onnxruntime.quantization")
        ort_q.quantize_dynamic(str(src), str(path), weight_type=ort_q.QuantType.QInt8)
    model = onnx.load(str(path))
    {"nan_epsilon": _nan_epsilon, "bad_perm": _bad_perm, "computed_zero_point": _computed_zero_point}[case](model)
    onnx.save_model(model, str(path))
    with pytest.raises(UnsupportedModel, match=match):
        convert(path, tmp_path / "x.edgebert", dtype="float32")
    assert not (tmp_path / "x.edgebert").exists()
