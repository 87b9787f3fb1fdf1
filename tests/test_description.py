"""A file describes what it contains or is refused (issue 19): edgebert/description.py."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import edgebert
from edgebert import names
from edgebert.description import describe
from edgebert.errors import InvalidModelFile
from edgebert.format import read_model, write_model

LEGACY = sorted((Path(__file__).parent / "data" / "legacy").glob("*.edgebert"))


def _rewrite(src, dst, edit):
    """A copy of ``src`` whose JSON metadata ``edit(meta)`` changed in place (meta: key -> parsed value)."""
    f = read_model(src)
    plain = (names.TOKENIZER, names.ARCHITECTURE, names.SOURCE_ARCHITECTURE)
    meta = {k: (f.json(k) if k not in plain else v) for k, v in f.metadata.items()
            if k not in (names.FORMAT, names.VERSION, names.CHECKSUM)}
    edit(meta)
    write_model(dst, {k: np.array(v) for k, v in f.tensors.items()}, meta)
    return dst


def _refused(src, tmp_path, edit, *fragments):
    bad = _rewrite(src, tmp_path / "bad.edgebert", edit)
    with pytest.raises(InvalidModelFile) as info:
        describe(read_model(bad))
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))


def _set(key, field, value):
    def edit(meta):
        meta[key][field] = value
    return edit


@pytest.mark.parametrize("value", ["int4", "float16", "int8_asymmetric_per_tensor", "", None, 8])
def test_quantization_names_outside_the_vocabulary_refused(tiny_int8, tmp_path, value):
    _refused(tiny_int8, tmp_path, _set(names.QUANTIZATION, "weights", value), "quantization weights",
             "not a scheme this version implements")


def test_quantization_name_contradicting_the_dtypes_refused(tiny_int8, tmp_path):
    _refused(tiny_int8, tmp_path, _set(names.QUANTIZATION, "weights", "float32"),
             "edgebert.quantization weights is 'float32', but the content says 'int8_symmetric_per_channel'")
    _refused(tiny_int8, tmp_path, _set(names.QUANTIZATION, "activations", "float32"), "activations is 'float32'")
    _refused(tiny_int8, tmp_path, lambda m: m[names.QUANTIZATION].pop("scale_convention"), "scale_convention")


@pytest.mark.parametrize("value", [0, 7, "cls", "12", {}, None])
def test_pooling_normalize_must_be_a_boolean(tiny_int8, tmp_path, value):
    _refused(tiny_int8, tmp_path, _set(names.POOLING, "normalize", value), "normalize is", "JSON boolean")


@pytest.mark.parametrize("field, value, says", [
    ("num_layers", 2**63 - 1, "it must be an integer in 1..2147483647"),
    ("num_layers", 3, "edgebert.config num_layers is 3, but the content says 2"),
    ("num_layers", True, "it must be an integer"),
    ("layer_norm_eps", 7, "layer_norm_eps is 7; it must be a number in (0, 0.001]"),
    ("layer_norm_eps", {}, "layer_norm_eps is {}"),
    ("layer_norm_eps", 1e-5, "layer_norm_eps is 1e-05, but the content says 1e-12"),
    ("intermediate_size", [], "intermediate_size is []"),
    ("intermediate_size", 64, "intermediate_size is 64, but the content says 128"),
    ("hidden_act", 1, "hidden_act is 1"),
    ("hidden_act", "tanh", "hidden_act is 'tanh', but the content says 'gelu'"),
    ("vocab_size", 30521, "vocab_size is 30521, but the content says 30522"),
    ("feed_forward", "gated", "feed_forward is 'gated', but the content says 'plain'"),
    ("shared_layers", 0, "shared_layers is 0; it must be a JSON boolean"),
    ("embedding_size", 64, "embedding_size is 64, but the content says None"),
    ("rotary", True, "unknown fields ['rotary']"),
])
def test_config_fields_checked_against_the_content(tiny_int8, tmp_path, field, value, says):
    _refused(tiny_int8, tmp_path, _set(names.CONFIG, field, value), says)


def test_objects_with_unknown_or_missing_keys_refused(tiny_int8, tmp_path):
    _refused(tiny_int8, tmp_path, _set(names.POOLING, "extra", 1), "edgebert.pooling must be an object with exactly")
    _refused(tiny_int8, tmp_path, _set(names.TOKENIZER_CONFIG, "max_length", 10**6), "max_length is 1000000")
    _refused(tiny_int8, tmp_path, _set(names.TOKENIZER_CONFIG, "pad_token_id", 5),
             "pad_token_id is 5, but the content says 0")
    _refused(tiny_int8, tmp_path, lambda m: m[names.CONFIG].pop("hidden_size"), "edgebert.config lacks hidden_size")
    _refused(tiny_int8, tmp_path, lambda m: m.update({names.HEAD: {"task": "masked-lm", "tied_decoder": True}}),
             "graph outputs ['last_hidden_state'], but edgebert.head task 'masked-lm' has")


def test_report_and_calibration_checked_against_the_content(tiny_int8, tmp_path):
    _refused(tiny_int8, tmp_path, lambda m: m[names.REPORT].pop("blk.0.ffn_up.weight"), "edgebert.report lists")
    _refused(tiny_int8, tmp_path, lambda m: m[names.CALIBRATION]["smoothquant"].update(layers=[]),
             "smoothquant layers is []")
    _refused(tiny_int8, tmp_path, lambda m: m[names.CALIBRATION].update(higher_precision={}),
             "higher_precision is {}, but the content says")


def test_head_fields_checked_against_the_graph(tiny_head, tmp_path):
    cls = tiny_head("BertForSequenceClassification", "int8")
    _refused(cls, tmp_path, lambda m: m[names.HEAD]["id2label"].update({"2": "extra"}),
             "gives logits 3 columns (labels), but the graph gives 2")
    _refused(cls, tmp_path, _set(names.HEAD, "problem_type", "ranking"), "problem_type is 'ranking'")
    _refused(cls, tmp_path, _set(names.HEAD, "task", "token-classification"), "one row per")
    mlm = tiny_head("BertForMaskedLM", "int8")
    _refused(mlm, tmp_path, _set(names.HEAD, "tied_decoder", False), "tied_decoder is False, but the content says True")


def test_unknown_top_level_keys_are_listed_not_refused(tiny_int8, tmp_path):
    path = _rewrite(tiny_int8, tmp_path / "extra.edgebert", lambda m: m.update({"vendor.note": "hello"}))
    assert describe(read_model(path)).unknown_keys == ("vendor.note",)


def test_current_files_verify_with_nothing_derived(tiny_int8, tiny_head):
    for path in (tiny_int8, tiny_head("BertForPreTraining", "int8"), tiny_head("BertForQuestionAnswering", "float32")):
        desc = describe(read_model(path))
        assert desc.derived == {} or set(desc.derived) <= {"config.position_ids"}, desc.derived
        assert desc.config["num_layers"] == 2 and desc.unknown_keys == ()


@pytest.mark.parametrize("path", LEGACY, ids=[p.name for p in LEGACY])
def test_files_of_earlier_converters_load_unchanged(path):
    """tests/data/legacy (made by tests/data/make_legacy.py with each era's own converter)."""
    manifest = json.loads((path.parent / "MANIFEST.json").read_text())
    assert path.name in manifest
    model = edgebert.load(path)
    derived = model.description.derived
    if path.name.startswith(("era_a", "era_b", "era_c")):  # before the architecture flags
        assert {"config.norm_placement", "config.bias", "config.embedding_size"} <= set(derived)
    if path.name.startswith("era_a") and "int8" in path.name:
        assert model.quantization["activations"] == "uint8_asymmetric_per_token_dynamic"
        assert "int8_symmetric_per_token_dynamic" in derived["quantization.activations"]
    assert model.config["norm_placement"] == "post" and model.config["embedding_size"] is None
    vectors = model.embed(["hello world", "a b c"])
    assert vectors.shape == (2, 16) and np.isfinite(vectors).all()


def test_format_doc_states_the_rule_of_every_field():
    from edgebert.content import CONFIG_RULES
    from edgebert.description import HEAD_TASKS, PROBLEM_TYPES, SCHEMES

    text = (Path(__file__).resolve().parents[1] / "docs" / "format.md").read_text()
    section = text[text.index("## One source of truth"):text.index("## Checksum")]
    for word in (*CONFIG_RULES, *HEAD_TASKS, *(s for v in SCHEMES.values() for s in v),
                 *(p for p in PROBLEM_TYPES if p)):
        assert f"`{word}`" in section, f"docs/format.md's rules do not name {word!r}"
