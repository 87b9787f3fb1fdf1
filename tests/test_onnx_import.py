"""``edgebert convert model.onnx``: tiny random BERTs exported by torch.onnx.export (TorchScript-based,
opset 14 with decomposed LayerNorm and 17 with fused; dynamo-based), mapped by structure and compared
with transformers itself; ONNX Runtime's quantize_dynamic int8 files kept or requantized."""
from __future__ import annotations

import numpy as np
import pytest

import edgebert
from edgebert.errors import InvalidModelFile, UnsupportedModel
from edgebert.format import read_model

from onnx_models import assert_kept_exactly, batch, cosines, encode, export, mean_pooled, tiny_torch_model, torch_outputs

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

# float32 file vs torch: the same math, only float32 summation order differs (issue 13's bar).
FP32_ATOL = 1e-4
# int8 file vs torch FP32: mean cosine of the last hidden state's real token rows (issue 13's bar).
INT8_MIN_MEAN_COSINE = 0.99
# int8 file vs ONNX Runtime running the same int8 file: the same weights, activations quantized per
# token here and per tensor there (issue 13: mean >= 0.998, worst >= 0.99).
VS_ORT_MEAN_COSINE, VS_ORT_WORST_COSINE = 0.998, 0.99

VARIANTS = {  # name -> (source class, exporter, opset, token_type_ids input)
    "decomposed-layernorm": ("BertModel", "torchscript", 14, True),
    "fused-layernorm": ("BertModel", "torchscript", 17, True),
    "no-token-types": ("BertModel", "torchscript", 17, False),
    "sequence-classification": ("BertForSequenceClassification", "torchscript", 17, True),
    "dynamo": ("BertModel", "dynamo", 18, True),
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory, minilm_dir):
    cache = {}

    def get(variant: str):
        if variant not in cache:
            cls, exporter, opset, tt = VARIANTS[variant]
            if exporter == "dynamo":
                pytest.importorskip("onnxscript")
            model = tiny_torch_model(cls)
            folder = tmp_path_factory.mktemp(variant)
            cache[variant] = (model, export(model, folder, minilm_dir, exporter, opset, token_types=tt))
        return cache[variant]
    return get


def run(path, b: dict) -> dict:
    return edgebert.load(path).forward(b["input_ids"], b["attention_mask"], b.get("token_type_ids"))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_float32_import_matches_transformers(exported, tmp_path, variant):
    from edgebert.converters import convert

    model, path = exported(variant)
    convert(path, tmp_path / "f.edgebert", dtype="float32")
    b = batch(token_types=VARIANTS[variant][3])
    ref, got = torch_outputs(model, b), run(tmp_path / "f.edgebert", b)
    real = b["attention_mask"].astype(bool)
    if variant == "sequence-classification":
        np.testing.assert_allclose(got["logits"], ref[0], atol=FP32_ATOL, rtol=0)
        meta = read_model(tmp_path / "f.edgebert").metadata
        assert '"task": "sequence-classification"' in meta["edgebert.head"]
    else:
        np.testing.assert_allclose(got["last_hidden_state"][real], ref[0][real], atol=FP32_ATOL, rtol=0)
    if not VARIANTS[variant][3]:  # type 0 folded into the positions: no token types in the file
        assert edgebert.load(tmp_path / "f.edgebert").config["type_vocab_size"] == 0


def test_same_weights_as_converting_the_transformers_folder(exported, tmp_path, minilm_dir):
    """HF -> torch.onnx -> edgebert gives tensors bit-identical to HF -> edgebert (float32 and int8)."""
    import shutil

    from edgebert.converters import convert

    model, path = exported("fused-layernorm")
    model.save_pretrained(tmp_path / "hf")
    for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(minilm_dir / name, tmp_path / "hf" / name)
    for dtype in ("float32", "int8"):
        convert(tmp_path / "hf", tmp_path / f"hf.{dtype}", dtype=dtype)
        convert(path, tmp_path / f"onnx.{dtype}", dtype=dtype)
        a, b = read_model(tmp_path / f"hf.{dtype}").tensors, read_model(tmp_path / f"onnx.{dtype}").tensors
        assert sorted(a) == sorted(b)
        for name in a:
            assert np.array_equal(np.asarray(a[name]), np.asarray(b[name])), f"{dtype}: {name} differs"
        hf, ox = read_model(tmp_path / f"hf.{dtype}").metadata, read_model(tmp_path / f"onnx.{dtype}").metadata
        for key in ("edgebert.config", "edgebert.graph", "edgebert.pooling", "edgebert.tokenizer_config"):
            assert hf[key] == ox[key], key


@pytest.mark.parametrize("normalize", [True, False])
def test_sentence_transformers_pooling_inside_the_graph(tmp_path, minilm_dir, normalize):
    from edgebert.converters import convert

    model = mean_pooled(tiny_torch_model("BertModel"), normalize)
    path = export(model, tmp_path / "st", minilm_dir)
    convert(path, tmp_path / "st.edgebert", dtype="float32")
    ours = edgebert.load(tmp_path / "st.edgebert")
    assert ours.pooling == {"mode": "mean", "normalize": normalize}
    texts = ["hello world", "a much longer sentence about nothing in particular, with a comma"]
    b = encode(minilm_dir / "tokenizer.json", texts)
    np.testing.assert_allclose(ours.embed(texts), torch_outputs(model, b)[0], atol=FP32_ATOL, rtol=0)


def _quantized(exported, tmp_path, **options) -> tuple:
    ort_q = pytest.importorskip("onnxruntime.quantization")
    import shutil

    model, path = exported("fused-layernorm")
    out = tmp_path / "q" / "model.onnx"
    shutil.copytree(path.parent, out.parent)
    ort_q.quantize_dynamic(str(path), str(out), **options)
    return model, out


@pytest.mark.parametrize("per_channel", [False, True])
def test_int8_quantize_dynamic_keeps_symmetric_weights(exported, tmp_path, per_channel):
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType

    from edgebert.converters import convert
    from edgebert.info import file_info, format_info

    model, path = _quantized(exported, tmp_path, per_channel=per_channel, weight_type=QuantType.QInt8)
    convert(path, tmp_path / "q.edgebert", dtype="int8")
    assert_kept_exactly(path, read_model(tmp_path / "q.edgebert").tensors, layers=2)
    info = file_info(tmp_path / "q.edgebert")
    assert len(info["source_quantization"]["kept"]) == 8
    assert info["source_quantization"]["requantized"] == ["token_embd.weight"]  # int8 per tensor there, per row here
    assert any("8 weights kept exactly" in line for line in format_info(info, "q.edgebert"))

    b = batch()
    real = b["attention_mask"].astype(bool)
    got = run(tmp_path / "q.edgebert", b)["last_hidden_state"][real]
    assert cosines(got, torch_outputs(model, b)[0][real]).mean() >= INT8_MIN_MEAN_COSINE
    theirs = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, b)[0][real]
    c = cosines(got, theirs)
    assert c.mean() >= VS_ORT_MEAN_COSINE and c.min() >= VS_ORT_WORST_COSINE, (c.mean(), c.min())


def test_int8_asymmetric_weights_are_requantized(exported, tmp_path):
    from onnxruntime.quantization import QuantType

    from edgebert.converters import convert
    from edgebert.info import file_info

    model, path = _quantized(exported, tmp_path, per_channel=True, weight_type=QuantType.QUInt8)
    convert(path, tmp_path / "q.edgebert", dtype="int8")
    rec = file_info(tmp_path / "q.edgebert")["source_quantization"]
    assert rec["kept"] == [] and len(rec["requantized"]) == 9
    b = batch()
    real = b["attention_mask"].astype(bool)
    got = run(tmp_path / "q.edgebert", b)["last_hidden_state"][real]
    assert cosines(got, torch_outputs(model, b)[0][real]).mean() >= INT8_MIN_MEAN_COSINE


def test_tokenizer_from_option_or_refused(exported, tmp_path, minilm_dir):
    import shutil

    from edgebert.cli import main
    from edgebert.converters import convert

    _, path = exported("fused-layernorm")
    bare = tmp_path / "bare" / "model.onnx"
    bare.parent.mkdir()
    shutil.copy(path, bare)
    with pytest.raises(UnsupportedModel, match="no tokenizer beside the ONNX file; pass --tokenizer DIR"):
        convert(bare, tmp_path / "x.edgebert", dtype="float32")
    assert not (tmp_path / "x.edgebert").exists()
    assert main(["convert", str(bare), "--tokenizer", str(minilm_dir), "--dtype", "float32",
                 "-o", str(tmp_path / "x.edgebert")]) == 0
    assert edgebert.load(tmp_path / "x.edgebert").embed(["hello"]).shape == (1, 32)


def test_unmappable_graphs_are_refused_naming_the_node(tmp_path, minilm_dir):
    from edgebert.converters import convert

    relu = tiny_torch_model("BertModel", hidden_act="relu")  # our runtime's BERT has GELU feed-forwards
    path = export(relu, tmp_path / "relu", minilm_dir)
    with pytest.raises(UnsupportedModel, match=r"at node .*feed-forward activation is made of \['Relu'\]"):
        convert(path, tmp_path / "x.edgebert", dtype="float32")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07not a model")
    with pytest.raises(InvalidModelFile, match="garbage.onnx: not a readable ONNX model"):
        convert(garbage, tmp_path / "x.edgebert")
    assert not (tmp_path / "x.edgebert").exists()


@pytest.mark.parametrize("location", ["../outside.bin", "/etc/hostname"])
def test_external_data_outside_the_folder_is_refused(exported, tmp_path, location):
    from edgebert.converters import convert

    _, path = exported("fused-layernorm")
    (tmp_path / "m").mkdir()
    onnx.save_model(onnx.load(str(path)), str(tmp_path / "m" / "model.onnx"), save_as_external_data=True,
                    location="weights.bin", size_threshold=0)
    model = onnx.load(str(tmp_path / "m" / "model.onnx"), load_external_data=False)
    entry = next(e for t in model.graph.initializer for e in t.external_data if e.key == "location")
    entry.value = location  # onnx.save refuses such locations; a hostile file is written by hand
    (tmp_path / "m" / "model.onnx").write_bytes(model.SerializeToString())
    with pytest.raises(UnsupportedModel, match="escapes the model folder|absolute path"):
        convert(tmp_path / "m" / "model.onnx", tmp_path / "x.edgebert")


def test_real_minilm_sentence_transformers_export(tmp_path, minilm_dir):
    """The real all-MiniLM-L6-v2 with mean pooling and normalisation inside the graph (as a
    sentence-transformers export), its modules.json beside it: float32 sentence embeddings vs torch."""
    import shutil

    import transformers
    from edgebert.converters import convert

    model = mean_pooled(transformers.BertModel.from_pretrained(minilm_dir).eval(), normalize=True)
    path = export(model, tmp_path / "minilm", minilm_dir)
    for name in ("modules.json", "sentence_bert_config.json", "1_Pooling"):
        (shutil.copytree if (minilm_dir / name).is_dir() else shutil.copy)(minilm_dir / name, path.parent / name)
    convert(path, tmp_path / "m.edgebert", dtype="float32")
    ours = edgebert.load(tmp_path / "m.edgebert")
    assert ours.pooling == {"mode": "mean", "normalize": True} and ours.max_length == 256
    texts = ["The quick brown fox jumps over the lazy dog.", "ONNX files come from many exporters."]
    b = encode(minilm_dir / "tokenizer.json", texts)
    np.testing.assert_allclose(ours.embed(texts), torch_outputs(model, b)[0], atol=FP32_ATOL, rtol=0)


def test_attention_scaled_by_another_constant_is_refused(exported, tmp_path):
    """The dynamo export scales q and k by constants (head width 8: 8^-1/4 each); another constant there is
    a different attention, refused naming the layer, not mapped onto ours."""
    import shutil

    from onnx import numpy_helper

    from edgebert.converters import convert

    _, path = exported("dynamo")
    model = onnx.load(str(path))
    root = 8 ** -0.25
    scales = [t for t in model.graph.initializer if np.prod(t.dims) == 1 and
              abs(float(numpy_helper.to_array(t).reshape(-1)[0]) - root) < 1e-6]
    assert scales, "the dynamo export no longer scales q and k by constants"
    for t in scales:
        t.CopyFrom(numpy_helper.from_array(np.full(list(t.dims), 0.5, np.float32), t.name))
    shutil.copytree(path.parent, tmp_path / "odd")
    onnx.save_model(model, str(tmp_path / "odd" / "model.onnx"))
    with pytest.raises(UnsupportedModel, match=r"layer 0: the attention scores are scaled by 0\.25, not 1/sqrt\(8\)"):
        convert(tmp_path / "odd" / "model.onnx", tmp_path / "x.edgebert", dtype="float32")
    assert not (tmp_path / "x.edgebert").exists()
