"""Cross-encoders (rerankers): the text-ranking pipeline, Model.rerank and `edgebert rerank`, against
sentence-transformers' CrossEncoder semantics computed with transformers itself (sigmoid of the one
logit of each (query, document) pair, tokenized as a pair and cut longest-first)."""
from __future__ import annotations

import json

import numpy as np
import pytest

import edgebert
from edgebert.errors import InputError

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

# float32 file vs torch: logits agree to ~1e-6; through the sigmoid a score moves by less.
FP32_SCORE_ATOL = 1e-5
QUERY = "a film about love"
DOCS = ["A moving romance, beautifully acted.", "The plot is dull and the jokes fall flat.",
        "Love and loss in a small town.", "x", "An action movie with car chases " * 12]


def _cross_encoder_scores(folder, query, docs, max_length):
    """CrossEncoder.predict for one label: tokenizer(queries, docs, padding, truncation='longest_first',
    max_length) -> model -> sigmoid."""
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(folder).eval()
    batch = tok([query] * len(docs), docs, padding=True, truncation="longest_first", max_length=max_length,
                return_tensors="pt")
    with torch.no_grad():
        return torch.sigmoid(model(**batch).logits[:, 0]).numpy()


@pytest.fixture(scope="module")
def reranker(tiny_head):
    return tiny_head("BertForSequenceClassification", num_labels=1), \
        tiny_head("BertForSequenceClassification", "float32", num_labels=1)


def test_rerank_gives_cross_encoder_scores_and_order(reranker):
    folder, path = reranker
    model = edgebert.load(path)
    want = _cross_encoder_scores(folder, QUERY, DOCS, model.max_length)
    ranked = model.rerank(QUERY, DOCS)
    assert [r["corpus_id"] for r in ranked] == list(np.argsort(-want, kind="stable"))
    np.testing.assert_allclose([r["score"] for r in ranked], np.sort(want)[::-1], atol=FP32_SCORE_ATOL, rtol=0)
    top = model.rerank(QUERY, DOCS, top_k=2, return_documents=True)
    assert top == [{**r, "text": DOCS[r["corpus_id"]]} for r in ranked[:2]]
    raw = edgebert.pipeline("text-ranking", model=model)({"query": QUERY, "documents": DOCS},
                                                          function_to_apply="none")
    scores = {r["corpus_id"]: r["score"] for r in raw}
    np.testing.assert_allclose(1 / (1 + np.exp(-np.array([scores[i] for i in range(len(DOCS))]))), want,
                               atol=FP32_SCORE_ATOL, rtol=0)


def test_long_pairs_are_cut_as_cross_encoder_cuts_them(reranker):
    folder, path = reranker
    long_doc = ["word " * 600]
    want = _cross_encoder_scores(folder, QUERY, long_doc, edgebert.load(path).max_length)
    got = edgebert.pipeline("text-ranking", model=path)({"query": QUERY, "documents": long_doc})
    np.testing.assert_allclose(got[0]["score"], want[0], atol=FP32_SCORE_ATOL, rtol=0)


def test_bad_inputs_and_models_are_refused(reranker, tiny_head):
    pipe = edgebert.pipeline("text-ranking", model=reranker[1])
    with pytest.raises(InputError, match="documents must be a non-empty list"):
        pipe({"query": QUERY, "documents": []})
    with pytest.raises(InputError, match=r'expected \{"query": text, "documents": \[texts\]\}'):
        pipe(QUERY)
    with pytest.raises(InputError, match="one output label; .* has 3"):
        edgebert.pipeline("text-ranking", model=tiny_head("BertForSequenceClassification", "float32",
                                                          num_labels=3))


def test_cli_rerank(reranker, tmp_path, capsys):
    from edgebert.cli import main

    docs = tmp_path / "docs.txt"
    docs.write_text("\n".join(DOCS) + "\n")
    assert main(["rerank", str(reranker[1]), "--query", QUERY, "--input", str(docs), "--top-k", "3"]) == 0
    (line,) = capsys.readouterr().out.strip().splitlines()
    assert json.loads(line) == edgebert.load(reranker[1]).rerank(QUERY, DOCS, top_k=3)
