"""Hostile model files and hostile text: refused with the right error, or a defined result; never a crash."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edgebert
from edgebert.errors import InputError, InvalidModelFile
from edgebert.format import read_model, write_model


def _rewrite(src, dst, tensors=None, metadata=None):
    """A copy of a model file with some tensors or metadata values replaced (checksum recomputed)."""
    f = read_model(src)
    t = {k: np.array(v) for k, v in f.tensors.items()}
    t.update(tensors or {})
    meta = {k: v for k, v in f.metadata.items()
            if k not in ("edgebert.format", "edgebert.version", "edgebert.payload_sha256")}
    meta.update(metadata or {})
    write_model(dst, t, meta)
    return dst


def test_nan_weight_refused(tiny_int8, tmp_path):
    bias = np.array(read_model(tiny_int8).tensors["blk.1.ffn_down.bias"])
    bias[3] = np.nan
    bad = _rewrite(tiny_int8, tmp_path / "nan.edgebert", tensors={"blk.1.ffn_down.bias": bias})
    with pytest.raises(InvalidModelFile, match="blk.1.ffn_down.bias holds NaN"):
        edgebert.load(bad)


def test_hostile_tokenizer_regex_refused(tiny_int8, tmp_path):
    tok = json.loads(read_model(tiny_int8).metadata["edgebert.tokenizer"])
    tok["pre_tokenizer"] = {"type": "Split", "pattern": {"Regex": "(a+)+$"}, "behavior": "Isolated", "invert": False}
    bad = _rewrite(tiny_int8, tmp_path / "regex.edgebert", metadata={"edgebert.tokenizer": json.dumps(tok)})
    with pytest.raises(InvalidModelFile, match="tokenizer pre_tokenizer type 'Split' is not allowed"):
        edgebert.load(bad)


def test_tokenizer_ids_beyond_vocabulary_refused(tiny_int8, tmp_path):
    tok = json.loads(read_model(tiny_int8).metadata["edgebert.tokenizer"])
    tok["model"]["vocab"]["zzzz"] = 10**6
    bad = _rewrite(tiny_int8, tmp_path / "vocab.edgebert", metadata={"edgebert.tokenizer": json.dumps(tok)})
    with pytest.raises(InvalidModelFile, match="vocabulary ids must be integers in 0..30521"):
        edgebert.load(bad)


def test_unknown_graph_op_refused(tiny_int8, tmp_path):
    graph = read_model(tiny_int8).json("edgebert.graph")
    graph["nodes"][1]["op"] = "exec_shell"
    bad = _rewrite(tiny_int8, tmp_path / "op.edgebert", metadata={"edgebert.graph": json.dumps(graph)})
    with pytest.raises(InvalidModelFile, match="unknown op"):
        edgebert.load(bad)


@pytest.fixture(scope="module")
def model(tiny_int8):
    return edgebert.load(tiny_int8)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(max_size=300), min_size=1, max_size=4))
def test_any_text_embeds_or_is_refused_clearly(model, texts):
    """Fuzz the text path: finite unit-independent vectors of the right shape, or an InputError."""
    try:
        out = model.embed(texts)
    except InputError:
        return
    assert out.shape == (len(texts), model.dim) and np.isfinite(out).all()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.binary(max_size=50), st.integers(), st.none(), st.floats()), min_size=1, max_size=3))
def test_non_text_items_are_refused_or_decoded(model, items):
    try:
        out = model.embed(items)
    except InputError as e:
        assert "text " in str(e)
        return
    assert np.isfinite(out).all()


def test_hundred_thousand_texts_stream(model):
    """Tokenized 4,096 at a time: memory bounded by the output, order kept."""
    texts = [f"item {i % 97}" for i in range(100_000)]
    out = model.embed(texts, batch_size=256)
    assert out.shape == (100_000, model.dim)
    np.testing.assert_array_equal(out[5], out[5 + 97 * 1000])
