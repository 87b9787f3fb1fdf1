"""Bad input to the API gets a clear, specific error; odd but valid input a defined result."""
from __future__ import annotations

import numpy as np
import pytest

import edgebert
from edgebert.errors import InputError


@pytest.fixture(scope="module")
def model(tiny_int8):
    return edgebert.load(tiny_int8)


def test_empty_string_embeds_like_cls_sep(model):
    """sentence-transformers embeds "" as [CLS] [SEP]; so do we (a defined result, not an error)."""
    got = model.embed(["", "   "])
    ids = model.tokenize([""])[0][0]
    assert len(ids) == 2
    assert np.isfinite(got).all()
    np.testing.assert_array_equal(got[0], got[1])  # whitespace only normalises to nothing


def test_empty_list_gives_empty_array(model):
    out = model.embed([])
    assert out.shape == (0, model.dim) and out.dtype == np.float32


def test_non_utf8_bytes_are_refused_with_index(model):
    with pytest.raises(InputError, match=r"text 1: bytes are not valid UTF-8 \(byte 1"):
        model.embed(["fine", b"a\xff"])


def test_utf8_bytes_are_accepted(model):
    np.testing.assert_array_equal(model.embed([b"caf\xc3\xa9"]), model.embed(["café"]))


def test_lone_surrogate_is_refused(model):
    with pytest.raises(InputError, match="text 0: character 3 is a lone surrogate"):
        model.embed(["abc\ud800"])


def test_wrong_types_are_refused(model):
    with pytest.raises(InputError, match="text 2: expected str, got int"):
        model.embed(["a", "b", 3])
    with pytest.raises(InputError, match="list of texts"):
        model.embed("a single string")
    with pytest.raises(InputError, match="batch_size"):
        model.embed(["a"], batch_size=0)


def test_over_long_text_truncates_like_the_tokenizer(model):
    long_text = "word " * 1000
    ids = model.tokenize([long_text])[0][0]
    assert len(ids) == model.max_length and ids[-1] == 102  # ends with [SEP], as HF truncation
    assert np.isfinite(model.embed([long_text])).all()


def test_over_long_text_refused_without_truncation(model):
    with pytest.raises(InputError, match=r"text 1 has 1002 tokens, more than the model's maximum of 128"):
        model.embed(["short", "word " * 1000], truncate=False)


def _ids(model, n=5):
    ids = np.array([[101] + [2000] * (n - 2) + [102]], dtype=np.int64)
    return ids, np.ones_like(ids)


@pytest.mark.parametrize("bad, message", [
    (lambda ids, mask: (ids.astype(np.float32), mask, None), "input_ids must hold integers"),
    (lambda ids, mask: (ids[0], mask[0], None), r"shape \(batch, tokens\)"),
    (lambda ids, mask: (ids, mask[:, :-1], None), "attention_mask has shape"),
    (lambda ids, mask: (ids, mask, np.ones((1, 2), np.int64)), "token_type_ids has shape"),
    (lambda ids, mask: (ids + 40000, mask, None), r"input_ids\[0, 0\] = 40101 is outside 0..30521"),
    (lambda ids, mask: (-ids, mask, None), r"input_ids\[0, 0\] = -101 is outside"),
    (lambda ids, mask: (ids, mask * 0, None), "sequence 0 has no 1"),
    (lambda ids, mask: (ids, mask * 2, None), r"attention_mask\[0, 0\] = 2 is outside 0..1"),
    (lambda ids, mask: (ids, mask, np.full_like(ids, 2)), r"token_type_ids\[0, 0\] = 2 is outside 0..1"),
    (lambda ids, mask: (np.zeros((1, 129), np.int64), np.ones((1, 129), np.int64), None), "exceed the model's 128"),
    (lambda ids, mask: (np.zeros((0, 4), np.int64), np.zeros((0, 4), np.int64), None), "shape"),
])
def test_run_refuses_bad_arrays(model, bad, message):
    ids, mask = _ids(model)
    with pytest.raises(InputError, match=message):
        model.run(*bad(ids, mask))


def test_run_accepts_bool_mask_and_int32(model):
    ids, mask = _ids(model)
    a = model.run(ids.astype(np.int32), mask.astype(bool))
    b = model.run(ids, mask)
    np.testing.assert_array_equal(a, b)


def test_threads_setting_is_checked(tiny_int8, monkeypatch):
    with pytest.raises(InputError, match="threads must be a positive integer"):
        edgebert.load(tiny_int8, threads=0)
    monkeypatch.setenv("EDGEBERT_NUM_THREADS", "many")
    with pytest.raises(InputError, match="EDGEBERT_NUM_THREADS='many'"):
        edgebert.load(tiny_int8)
    monkeypatch.setenv("EDGEBERT_NUM_THREADS", "1")
    assert edgebert.load(tiny_int8).threads == 1


def test_ten_megabyte_text_is_cut_early_and_exactly(model):
    """A 10 MB text gives the same embedding as any prefix that already fills the model."""
    huge = "word " * 2_000_000
    np.testing.assert_array_equal(model.embed([huge]), model.embed(["word " * 1000]))
    with pytest.raises(InputError, match=r"text 0 has more than 128 tokens \(10000000 characters\)"):
        model.embed([huge], truncate=False)


def test_prefix_without_enough_tokens_falls_back_to_whole_text(model):
    """Mostly whitespace: the character prefix holds few tokens, so the whole text is tokenized."""
    text = " " * 5000 + "word " * 200
    ids = model.tokenize([text])[0][0]
    assert len(ids) == model.max_length and ids[1] != 102


def test_control_characters_and_odd_unicode_have_defined_results(model):
    texts = ["\x00\x01\x1f", "\u200b\u200d", "🙂" * 50, "a\tb\nc\r\n", "ﬁ ligature İstanbul"]
    out = model.embed(texts)
    assert out.shape == (5, model.dim) and np.isfinite(out).all()
