"""edgebert/text.py helpers: reading one tokenizer.json setting without the vocabulary, and the
memory of tokenizers that passed the safety check."""
from __future__ import annotations

import json

import pytest

from edgebert import text
from edgebert.errors import InvalidModelFile


def test_top_level_value_equals_json_loads(minilm_dir):
    doc = (minilm_dir / "tokenizer.json").read_text(encoding="utf-8")
    full = json.loads(doc)
    for key in [*full, "absent"]:
        assert text.top_level_value(doc, key) == full.get(key), key
    for small in ('{}', ' { "a" : [1, {"padding": 2}] , "padding" : {"pad_id": 3} } ', '{"padding": null}'):
        assert text.top_level_value(small, "padding") == json.loads(small).get("padding"), small


@pytest.mark.parametrize("bad", ["[1]", "", '{"a" 1}', '{"a": }', '{1: 2}', '"padding"'])
def test_top_level_value_refuses_what_is_not_a_json_object(bad):
    with pytest.raises(ValueError):
        text.top_level_value(bad, "padding")


def test_a_checked_tokenizer_is_remembered_and_a_hostile_one_never(tmp_path, monkeypatch, minilm_dir):
    monkeypatch.setenv("EDGEBERT_CACHE", str(tmp_path))
    doc = (minilm_dir / "tokenizer.json").read_text(encoding="utf-8")
    text.check_tokenizer(doc, 30522)
    assert len(list((tmp_path / "checked-tokenizers").iterdir())) == 1
    spec = json.loads(doc)
    spec["normalizer"] = {"type": "Replace", "pattern": {"Regex": "(a+)+$"}, "content": ""}
    hostile = json.dumps(spec)
    for _ in range(2):  # refused every time: a refusal is never remembered
        with pytest.raises(InvalidModelFile, match="Replace pattern"):
            text.check_tokenizer(hostile, 30522)
    assert len(list((tmp_path / "checked-tokenizers").iterdir())) == 1
    with pytest.raises(InvalidModelFile, match="vocabulary ids"):
        text.check_tokenizer(doc, 100)  # the same text with another vocabulary size is checked again
