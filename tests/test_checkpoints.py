"""Checkpoints in the shapes transformers loads: legacy LayerNorm names, tied decoders, base
prefixes, sharded safetensors. Each converts to the same tensors as the plain checkpoint."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import edgebert
from edgebert.converters import convert
from edgebert.errors import UnsupportedModel
from edgebert.format import read_model

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
safetensors_numpy = pytest.importorskip("safetensors.numpy")

FP32_ATOL = 1e-4  # float32 file vs torch: the same math, only the float32 summation order differs


def _rewrite(src, dst, rename=lambda name: name, shards: int = 1):
    """A copy of the model folder ``src`` whose weights are renamed and split into ``shards`` files."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.edgebert"))
    weights = safetensors_numpy.load_file(dst / "model.safetensors")
    (dst / "model.safetensors").unlink()
    weights = {rename(k): v for k, v in weights.items()}
    if shards == 1:
        safetensors_numpy.save_file(weights, dst / "model.safetensors", metadata={"format": "pt"})
        return dst
    names = sorted(weights)
    weight_map = {}
    for i in range(shards):
        shard = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: weights[n] for n in names[i::shards]}
        safetensors_numpy.save_file(part, dst / shard, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, shard))
    (dst / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return dst


def _same_file(a, b):
    fa, fb = read_model(a), read_model(b)
    assert fa.tensors.keys() == fb.tensors.keys()
    for name, value in fa.tensors.items():
        np.testing.assert_array_equal(fb.tensors[name], value, err_msg=name)
    assert fa.json("edgebert.graph") == fb.json("edgebert.graph")


def _legacy(name: str) -> str:
    """TensorFlow-era names: LayerNorm gamma/beta (transformers renames them on load)."""
    return name.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")


def test_legacy_names_and_tied_decoder_load_as_transformers_loads_them(tiny_head, tmp_path):
    plain = tiny_head("BertForMaskedLM")
    folder = _rewrite(plain, tmp_path / "legacy", _legacy)
    keys = safetensors_numpy.load_file(folder / "model.safetensors").keys()
    assert "bert.embeddings.LayerNorm.gamma" in keys and "cls.predictions.decoder.weight" not in keys
    convert(folder, tmp_path / "legacy.edgebert", dtype="float32")
    _same_file(tiny_head("BertForMaskedLM", "float32"), tmp_path / "legacy.edgebert")
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    batch = tok(["Hello world!", "a longer sentence with more words"], padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = transformers.BertForMaskedLM.from_pretrained(folder).eval()(**batch).logits.numpy()
    got = edgebert.load(tmp_path / "legacy.edgebert").forward(batch["input_ids"].numpy(),
                                                              batch["attention_mask"].numpy())["logits"]
    mask = batch["attention_mask"].numpy().astype(bool)
    np.testing.assert_allclose(got[mask], expected[mask], atol=FP32_ATOL, rtol=0)


def test_mlm_bias_under_the_decoders_tied_name(tiny_head, tmp_path):
    """Older checkpoints save the tied MLM bias as cls.predictions.decoder.bias (alone, or beside an equal copy)."""
    plain = tiny_head("BertForMaskedLM")
    folder = _rewrite(plain, tmp_path / "m", lambda n: "cls.predictions.decoder.bias" if n == "cls.predictions.bias"
                      else n)
    convert(folder, tmp_path / "x.edgebert", dtype="float32")
    _same_file(tiny_head("BertForMaskedLM", "float32"), tmp_path / "x.edgebert")
    weights = safetensors_numpy.load_file(folder / "model.safetensors")
    weights["cls.predictions.bias"] = weights["cls.predictions.decoder.bias"] + 1
    safetensors_numpy.save_file(weights, folder / "model.safetensors")
    with pytest.raises(UnsupportedModel, match="should be one tied tensor but differ"):
        convert(folder, tmp_path / "y.edgebert", dtype="float32")


@pytest.mark.parametrize("prefix", ["bert.", "model."])
def test_encoder_under_a_base_prefix(tiny_dir, tiny_int8, tmp_path, prefix):
    folder = _rewrite(tiny_dir, tmp_path / "m", lambda n: prefix + n)
    convert(folder, tmp_path / "x.edgebert")
    _same_file(tiny_int8, tmp_path / "x.edgebert")


def test_sharded_safetensors_with_an_index(tiny_head, tmp_path):
    folder = _rewrite(tiny_head("BertForPreTraining"), tmp_path / "sharded", shards=3)
    assert len(list(folder.glob("model-*.safetensors"))) == 3
    convert(folder, tmp_path / "x.edgebert", dtype="float32")
    _same_file(tiny_head("BertForPreTraining", "float32"), tmp_path / "x.edgebert")


def test_ambiguous_or_doubled_names_are_refused(tiny_dir, tmp_path):
    folder = _rewrite(tiny_dir, tmp_path / "both")
    weights = safetensors_numpy.load_file(folder / "model.safetensors")
    weights["bert.embeddings.word_embeddings.weight"] = weights["embeddings.word_embeddings.weight"]
    safetensors_numpy.save_file(weights, folder / "model.safetensors")
    with pytest.raises(UnsupportedModel, match="expected exactly one of 'embeddings.word_embeddings.weight', "
                                               "'bert.embeddings.word_embeddings.weight'.*found 2"):
        convert(folder, tmp_path / "x.edgebert")
    del weights["bert.embeddings.word_embeddings.weight"]
    weights["embeddings.LayerNorm.gamma"] = weights["embeddings.LayerNorm.weight"]
    safetensors_numpy.save_file(weights, folder / "model.safetensors")
    with pytest.raises(UnsupportedModel, match="holds 'embeddings.LayerNorm.weight' twice"):
        convert(folder, tmp_path / "x.edgebert")
