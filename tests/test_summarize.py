"""Extractive summarization and sentence similarity on real text (gensim's Lee and Pang-Lee corpora)."""
from __future__ import annotations

import numpy as np
import pytest

import edgebert
from edgebert.errors import InputError
from edgebert.pipelines.summarization import select, split_sentences

# int8 vs FP32 sentence embeddings of MiniLM have cosine > 0.99 (test_accuracy_minilm);
# a cosine similarity between two texts moves by at most a few hundredths.
SIMILARITY_ATOL = 0.03
# Centrality sums many similarities, so near-ties between sentences can swap;
# most chosen sentences must still be the FP32 choice.
MIN_MEAN_OVERLAP = 0.6


@pytest.fixture(scope="module")
def articles():
    pytest.importorskip("gensim")
    from edgebert.corpora import lee_background

    return [a for a in lee_background() if len(split_sentences(a)) >= 6][:4]


def test_summary_keeps_order_and_budget(minilm_int8, articles):
    summarize = edgebert.pipeline("summarization", model=minilm_int8)
    results = summarize(articles, max_sentences=3)
    assert len(results) == len(articles)
    for article, r in zip(articles, results):
        sentences = split_sentences(article)
        idx = r["sentence_indices"]
        assert idx == sorted(idx) and 1 <= len(idx) <= 3
        assert r["summary_text"] == " ".join(sentences[i] for i in idx)
    short = summarize(articles[0], max_sentences=5, max_chars=300)
    assert len(short["summary_text"]) <= 300 or len(short["sentence_indices"]) == 1


def test_summary_matches_fp32_selection(minilm_int8, minilm_dir, articles):
    from conftest import hf_mean_pooled

    summarize = edgebert.pipeline("summarization", model=minilm_int8)
    docs = [split_sentences(a) for a in articles]
    ref = hf_mean_pooled(minilm_dir, [s for d in docs for s in d], 256, normalize=True)  # one model load
    overlaps, start = [], 0
    for sentences, got in zip(docs, summarize(docs)):
        want = select(ref[start:start + len(sentences)], [len(s) for s in sentences], 3, None)
        start += len(sentences)
        overlaps.append(len(set(got["sentence_indices"]) & set(want)) / len(want))
    assert np.mean(overlaps) >= MIN_MEAN_OVERLAP, overlaps


def test_sentence_similarity_on_pang_lee(minilm_int8, minilm_dir, pang_lee_texts):
    from conftest import hf_mean_pooled

    texts = pang_lee_texts[:40]
    sim = edgebert.pipeline("sentence-similarity", model=minilm_int8)
    got = sim({"source_sentence": texts[0], "sentences": texts[1:]})
    ref = hf_mean_pooled(minilm_dir, texts, 256, normalize=True)
    np.testing.assert_allclose(got, ref[1:] @ ref[0], atol=SIMILARITY_ATOL)


def test_summarize_bad_input(minilm_int8):
    summarize = edgebert.pipeline("summarization", model=minilm_int8)
    with pytest.raises(InputError, match="no sentences"):
        summarize("   ")
    with pytest.raises(InputError, match="max_sentences"):
        summarize("One. Two.", max_sentences=0)
