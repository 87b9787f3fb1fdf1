"""Converter pipeline: registry, sentence-transformers layout, refusals, quantization report."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edgebert.converters import convert, supported_architectures
from edgebert.converters.quantize import dequantize_rows, quantize_rows
from edgebert.errors import UnsupportedModel
from edgebert.format import read_model


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_quantize_rows_convention():
    w = np.array([[0.5, -1.0, 0.25], [0.0, 0.0, 0.0], [3.0, 1.0, -2.0]], dtype=np.float32)
    q, scale, err = quantize_rows(w)
    assert q.dtype == np.int8 and scale.dtype == np.float32
    np.testing.assert_allclose(scale, [1.0 / 127, 1.0, 3.0 / 127])
    assert q[0, 1] == -127 and q[2, 0] == 127 and not q[1].any()
    assert np.abs(dequantize_rows(q, scale) - w).max() <= scale.max() / 2 + 1e-7
    assert err.max_abs <= (scale / 2).max() + 1e-7 and err.max_rel < 0.01


def test_sentence_transformers_settings_travel(minilm_int8):
    f = read_model(minilm_int8)
    assert f.json("edgebert.pooling") == {"mode": "mean", "normalize": True}
    assert f.json("edgebert.tokenizer_config")["max_length"] == 256
    assert f.tensors["blk.0.attn_qkv.weight"].dtype == np.int8
    assert f.tensors["blk.0.attn_qkv.weight"].shape == (1152, 384)
    assert f.tensors["token_embd.weight"].dtype == np.int8
    assert f.tensors["blk.5.ffn_norm.weight"].dtype == np.float32
    report = f.json("edgebert.report")
    assert set(report) == {n for n in f.tensors if n.endswith(".weight") and f.tensors[n].dtype == np.int8}
    assert all(0 < r["max_rel"] < 0.01 for r in report.values())  # half a step of 127 is 0.4 %


def test_plain_bert_defaults_to_mean_pooling(tiny_int8):
    f = read_model(tiny_int8)
    assert f.json("edgebert.pooling") == {"mode": "mean", "normalize": False}
    assert f.metadata["edgebert.source_architecture"] == "BertModel"


def test_unknown_architecture_lists_supported(tiny_dir, tmp_path):
    folder = _copy(tiny_dir, tmp_path / "m")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["architectures"] = ["GPT2LMHeadModel"]
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UnsupportedModel, match=r"'GPT2LMHeadModel' is not supported; supported: .*BertModel"):
        convert(folder, tmp_path / "x.edgebert")
    assert "BertModel" in supported_architectures()


@pytest.mark.parametrize("missing, message", [
    ("config.json", "missing file: .*config.json"),
    ("model.safetensors", "no weights found"),
    ("tokenizer.json", None),  # falls back to vocab.txt
])
def test_missing_files(tiny_dir, tmp_path, missing, message):
    folder = _copy(tiny_dir, tmp_path / "m")
    (folder / missing).unlink()
    if message is None:
        convert(folder, tmp_path / "x.edgebert")
        return
    with pytest.raises(UnsupportedModel, match=message):
        convert(folder, tmp_path / "x.edgebert")
    assert not (tmp_path / "x.edgebert").exists()


def test_not_a_folder(tmp_path):
    with pytest.raises(UnsupportedModel, match="not a model folder"):
        convert(tmp_path / "nope", tmp_path / "x.edgebert")


def test_pickle_needs_opt_in(tiny_dir, tiny_int8, tmp_path):
    import torch
    from safetensors.torch import load_file

    folder = _copy(tiny_dir, tmp_path / "m")
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    with pytest.raises(UnsupportedModel, match="pickle.*--allow-pickle"):
        convert(folder, tmp_path / "x.edgebert")
    convert(folder, tmp_path / "x.edgebert", allow_pickle=True)
    from_pickle, from_safetensors = read_model(tmp_path / "x.edgebert"), read_model(tiny_int8)
    assert from_pickle.tensors.keys() == from_safetensors.tensors.keys()
    for name, value in from_safetensors.tensors.items():
        np.testing.assert_array_equal(from_pickle.tensors[name], value)


def test_wrong_shape_and_unknown_weights_refused(tiny_dir, tmp_path):
    from safetensors.numpy import load_file, save_file

    folder = _copy(tiny_dir, tmp_path / "m")
    weights = load_file(folder / "model.safetensors")
    extra = dict(weights, **{"encoder.layer.0.mystery.weight": np.zeros(3, np.float32)})
    save_file(extra, folder / "model.safetensors")
    with pytest.raises(UnsupportedModel, match="does not understand: encoder.layer.0.mystery.weight"):
        convert(folder, tmp_path / "x.edgebert")
    weights["encoder.layer.1.output.dense.weight"] = np.zeros((64, 64), np.float32)
    save_file(weights, folder / "model.safetensors")
    with pytest.raises(UnsupportedModel, match=r"blk.1.ffn_down.weight: shape \(64, 64\) does not match"):
        convert(folder, tmp_path / "x.edgebert")


def test_unsupported_activation_and_modules_path_escape(tiny_dir, tmp_path):
    folder = _copy(tiny_dir, tmp_path / "m")
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(dict(cfg, hidden_act="relu")))
    with pytest.raises(UnsupportedModel, match="hidden_act 'relu' is not supported; supported: gelu"):
        convert(folder, tmp_path / "x.edgebert")
    (folder / "config.json").write_text(json.dumps(cfg))
    (folder / "modules.json").write_text(json.dumps(
        [{"idx": 0, "name": "0", "path": "../../etc", "type": "sentence_transformers.models.Transformer"}]))
    with pytest.raises(UnsupportedModel, match="escapes the model folder"):
        convert(folder, tmp_path / "x.edgebert")


def test_nan_weights_refused(tiny_dir, tmp_path):
    from safetensors.numpy import load_file, save_file

    folder = _copy(tiny_dir, tmp_path / "m")
    weights = load_file(folder / "model.safetensors")
    weights["embeddings.LayerNorm.bias"][3] = np.nan
    save_file(weights, folder / "model.safetensors")
    with pytest.raises(UnsupportedModel, match="embd_norm.bias holds NaN"):
        convert(folder, tmp_path / "x.edgebert")
