"""``edgebert convert model.onnx`` on optimum's exports (optimum-onnx's ``main_export``, offline, from a tiny
random transformers folder): feature-extraction and text-classification. Issue 13's round-trip target:
HF -> optimum ONNX -> edgebert gives the same weights, bit for bit, as HF -> edgebert."""
from __future__ import annotations

import numpy as np
import pytest

import edgebert
from edgebert.format import read_model

from conftest import make_tiny_model
from onnx_models import batch, onnx_runtime

exporters = pytest.importorskip("optimum.exporters.onnx")

# float32 file vs ONNX Runtime on optimum's float32 file: the same math, float32 summation order differs.
FP32_ATOL = 1e-4
SAME_METADATA = ("edgebert.config", "edgebert.graph", "edgebert.pooling", "edgebert.tokenizer_config",
                 "edgebert.quantization")


@pytest.mark.parametrize("model_class, task, output", [("BertModel", "feature-extraction", "last_hidden_state"),
                                                        ("BertForSequenceClassification", "text-classification",
                                                         "logits")])
def test_optimum_export_gives_the_same_file(tmp_path, minilm_dir, monkeypatch, model_class, task, output):
    from edgebert.converters import convert

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hf = make_tiny_model(tmp_path / "hf", minilm_dir, model_class)
    exporters.main_export(str(hf), output=str(tmp_path / "onnx"), task=task, do_validation=False)
    onnx_path = tmp_path / "onnx" / "model.onnx"
    for dtype in ("float32", "int8"):
        convert(hf, tmp_path / f"hf.{dtype}", dtype=dtype)
        convert(onnx_path, tmp_path / f"onnx.{dtype}", dtype=dtype)
        a, b = read_model(tmp_path / f"hf.{dtype}"), read_model(tmp_path / f"onnx.{dtype}")
        assert sorted(a.tensors) == sorted(b.tensors)
        for name in a.tensors:
            assert np.array_equal(np.asarray(a.tensors[name]), np.asarray(b.tensors[name])), f"{dtype}: {name}"
        for key in SAME_METADATA + (("edgebert.head",) if output == "logits" else ()):
            assert a.metadata[key] == b.metadata[key], key
    bt = batch()
    ours = edgebert.load(tmp_path / "onnx.float32").forward(bt["input_ids"], bt["attention_mask"],
                                                           bt["token_type_ids"])[output]
    theirs = onnx_runtime(onnx_path, bt)[0]
    real = bt["attention_mask"].astype(bool) if output == "last_hidden_state" else slice(None)
    np.testing.assert_allclose(ours[real], theirs[real], atol=FP32_ATOL, rtol=0)
