"""Each pipeline against transformers' own pipeline of the same task, same tiny model, same inputs.

The float32 file must give the same labels, spans, offsets and words with
scores within FP32_SCORE_ATOL; the int8 file gives scores within
INT8_SCORE_ATOL, and labels are compared only where the FP32 margin between
the best and second choice exceeds that tolerance (random tiny models have
near-ties that any quantization may flip).
"""
from __future__ import annotations

import logging

import numpy as np
import pytest

import edgebert
from edgebert.errors import InputError

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
logging.getLogger("transformers").setLevel(logging.ERROR)

FP32_SCORE_ATOL = 1e-4  # float32 logits agree to ~1e-6 (tests/test_heads.py); probabilities less
# int8 logits are within 3% of their scale (test_heads.INT8_REL); through a
# softmax of the scaled tiny heads that moves a probability by at most a few hundredths.
INT8_SCORE_ATOL = 0.05

TEXTS = ["Hugging Face is based in New York City.", "The unbelievable Mr. Zörgensen met Ana in Paris",
         "short", "Numbers 12345, symbols & punctuation!"]
NLI = {0: "entailment", 1: "neutral", 2: "contradiction"}
NER = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"}


def hf_pipeline(task, folder):
    return transformers.pipeline(task, model=str(folder), tokenizer=str(folder), device="cpu")


def _close(ours, theirs, atol):
    assert abs(ours - float(theirs)) <= atol, (ours, float(theirs))


# ---- text-classification ---------------------------------------------------------
@pytest.mark.parametrize("problem_type", [None, "multi_label_classification", "regression"])
def test_text_classification_matches_transformers(tiny_head, problem_type):
    cfg = dict(num_labels=3, id2label={0: "neg", 1: "neu", 2: "pos"}, problem_type=problem_type)
    hf = hf_pipeline("text-classification", tiny_head("BertForSequenceClassification", **cfg))
    ours = edgebert.pipeline("text-classification", model=tiny_head("BertForSequenceClassification", "float32", **cfg))
    pairs = [{"text": "A man plays guitar.", "text_pair": "Someone makes music."},
             {"text": "It rains.", "text_pair": "The sun is out, no clouds."}]
    for inputs in (TEXTS, pairs):
        want, got = hf(inputs, top_k=None), ours(inputs, top_k=None)
        for w, g in zip(want, got, strict=True):
            assert [d["label"] for d in g] == [d["label"] for d in w]
            for a, b in zip(g, w):
                _close(a["score"], b["score"], FP32_SCORE_ATOL)
    assert [d["label"] for d in ours(TEXTS)] == [d["label"] for d in hf(TEXTS)]
    assert ours("one text")[0]["label"] == hf("one text")[0]["label"]  # a single str: wrapped in a list
    assert len(ours(TEXTS[0], top_k=2)) == 2


def test_text_classification_int8_close(tiny_head):
    cfg = dict(num_labels=3)
    ref = edgebert.pipeline("text-classification", model=tiny_head("BertForSequenceClassification", "float32", **cfg))
    int8 = edgebert.pipeline("text-classification", model=tiny_head("BertForSequenceClassification", "int8", **cfg))
    for w, g in zip(ref(TEXTS, top_k=None), int8(TEXTS, top_k=None)):
        want = {d["label"]: d["score"] for d in w}
        for d in g:
            _close(d["score"], want[d["label"]], INT8_SCORE_ATOL)
        if w[0]["score"] - w[1]["score"] > 2 * INT8_SCORE_ATOL:
            assert g[0]["label"] == w[0]["label"]


def test_zero_shot_matches_transformers(tiny_head):
    cfg = dict(num_labels=3, id2label=NLI, label2id={v: k for k, v in NLI.items()})
    hf = hf_pipeline("zero-shot-classification", tiny_head("BertForSequenceClassification", **cfg))
    ours = edgebert.pipeline("zero-shot-classification",
                             model=tiny_head("BertForSequenceClassification", "float32", **cfg))
    labels = ["travel", "cooking", "dancing", "politics"]
    for multi in (False, True):
        want, got = hf(TEXTS[:2], candidate_labels=labels, multi_label=multi), \
            ours(TEXTS[:2], candidate_labels=labels, multi_label=multi)
        for w, g in zip(want, got, strict=True):
            assert g["sequence"] == w["sequence"]
            np.testing.assert_allclose(g["scores"], w["scores"], atol=FP32_SCORE_ATOL)
            assert g["labels"] == w["labels"]
    with pytest.raises(InputError, match="entailment"):
        edgebert.pipeline("zero-shot-classification", model=tiny_head("BertForSequenceClassification", "float32",
                                                                      num_labels=3))


# ---- token-classification --------------------------------------------------------
@pytest.mark.parametrize("strategy", ["none", "simple", "first", "average", "max"])
def test_token_classification_matches_transformers(tiny_head, strategy):
    cfg = dict(num_labels=5, id2label=NER)
    hf = hf_pipeline("token-classification", tiny_head("BertForTokenClassification", **cfg))
    ours = edgebert.pipeline("ner", model=tiny_head("BertForTokenClassification", "float32", **cfg))
    want, got = hf(TEXTS, aggregation_strategy=strategy), ours(TEXTS, aggregation_strategy=strategy)
    assert sum(len(g) for g in got) > 0
    for text, w, g in zip(TEXTS, want, got, strict=True):
        assert len(g) == len(w)
        for a, b in zip(g, w):
            assert {k: v for k, v in a.items() if k != "score"} == {k: v for k, v in b.items() if k != "score"}
            _close(a["score"], b["score"], FP32_SCORE_ATOL)
            assert 0 <= a["start"] < a["end"] <= len(text)  # character offsets into the original text


def test_token_classification_int8_close(tiny_head):
    cfg = dict(num_labels=5, id2label=NER)
    ref = edgebert.pipeline("ner", model=tiny_head("BertForTokenClassification", "float32", **cfg))
    int8 = edgebert.pipeline("ner", model=tiny_head("BertForTokenClassification", "int8", **cfg))
    want, got = ref(TEXTS, ignore_labels=[]), int8(TEXTS, ignore_labels=[])
    for w, g in zip(want, got):
        assert [(d["start"], d["end"]) for d in g] == [(d["start"], d["end"]) for d in w]
        for a, b in zip(g, w):
            _close(a["score"], b["score"], INT8_SCORE_ATOL)


# ---- question-answering ------------------------------------------------------------
CONTEXT = ("The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. "
           "It is named after the engineer Gustave Eiffel, whose company designed and built the tower "
           "from 1887 to 1889. Locally nicknamed La dame de fer, it was constructed as the centerpiece "
           "of the 1889 World's Fair. ") * 3


@pytest.mark.parametrize("impossible", [False, True])
def test_question_answering_matches_transformers(tiny_head, impossible):
    """Against transformers' own question-answering pipeline (4.57; tests/test_pipeline_qa.py
    covers many more contexts and options)."""
    hf = hf_pipeline("question-answering", tiny_head("BertForQuestionAnswering"))
    qa = edgebert.pipeline("question-answering", model=tiny_head("BertForQuestionAnswering", "float32"))
    question = "Who designed the tower?"
    for kw in (dict(top_k=3, max_seq_len=64, doc_stride=16, handle_impossible_answer=impossible),
               dict(max_seq_len=64, doc_stride=16, handle_impossible_answer=impossible)):
        got, want = qa(question=question, context=CONTEXT, **kw), hf(question=question, context=CONTEXT, **kw)
        got, want = (got, want) if isinstance(want, list) else ([got], [want])
        assert [(d["start"], d["end"], d["answer"]) for d in got] == \
            [(d["start"], d["end"], d["answer"]) for d in want]
        for a, b in zip(got, want):
            _close(a["score"], b["score"], FP32_SCORE_ATOL)
            assert CONTEXT[a["start"]:a["end"]] == a["answer"]


def test_question_answering_int8_close(tiny_head):
    inputs = [{"question": "Who designed the tower?", "context": CONTEXT[:300]},
              {"question": "When was it built?", "context": CONTEXT[:200]}]
    ref = edgebert.pipeline("question-answering", model=tiny_head("BertForQuestionAnswering", "float32"))(inputs)
    got = edgebert.pipeline("question-answering", model=tiny_head("BertForQuestionAnswering", "int8"))(inputs)
    for item, g, w in zip(inputs, got, ref):
        assert item["context"][g["start"]:g["end"]] == g["answer"] != ""
        if (g["start"], g["end"]) == (w["start"], w["end"]):
            _close(g["score"], w["score"], INT8_SCORE_ATOL)


# ---- fill-mask, next-sentence, feature-extraction ---------------------------------
MASKED = ["Paris is the [MASK] of France.", "I [MASK] to the [MASK] yesterday."]


@pytest.mark.parametrize("model_class", ["BertForMaskedLM", "BertForPreTraining"])
def test_fill_mask_matches_transformers(tiny_head, model_class):
    hf = hf_pipeline("fill-mask", tiny_head("BertForMaskedLM"))  # same weights as its int8/fp32 files
    if model_class == "BertForPreTraining":
        hf = hf_pipeline("fill-mask", tiny_head(model_class))
    ours = edgebert.pipeline("fill-mask", model=tiny_head(model_class, "float32"))
    for kwargs in ({"top_k": 5}, {"targets": ["capital", "city", "paris", "zzzqx"], "top_k": 3}):
        want, got = hf(MASKED, **kwargs), ours(MASKED, **kwargs)
        for w, g in zip(_flat(want), _flat(got), strict=True):
            assert {k: v for k, v in g.items() if k != "score"} == {k: v for k, v in w.items() if k != "score"}
            _close(g["score"], w["score"], FP32_SCORE_ATOL)


def test_fill_mask_int8_close(tiny_head):
    ref = edgebert.pipeline("fill-mask", model=tiny_head("BertForMaskedLM", "float32"))
    int8 = edgebert.pipeline("fill-mask", model=tiny_head("BertForMaskedLM", "int8"))
    want = {d["token"]: d["score"] for d in ref(MASKED[0], top_k=50)}
    for d in int8(MASKED[0], top_k=5):
        if d["token"] in want:
            _close(d["score"], want[d["token"]], INT8_SCORE_ATOL)


def _flat(results):
    for r in results:
        if isinstance(r, dict):
            yield r
        else:
            yield from _flat(r)


def test_next_sentence_matches_transformers(tiny_head):
    folder = tiny_head("BertForNextSentencePrediction")
    pairs = [{"text": "I went to the store.", "text_pair": "I bought milk."},
             {"text": "The sky is blue.", "text_pair": "Penguins cannot fly, but swim well."}]
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.BertForNextSentencePrediction.from_pretrained(folder).eval()
    with torch.no_grad():
        probs = model(**tok([p["text"] for p in pairs], [p["text_pair"] for p in pairs], padding=True,
                            return_tensors="pt")).logits.softmax(-1).numpy()
    got = edgebert.pipeline("next-sentence", model=tiny_head("BertForNextSentencePrediction", "float32"))(
        pairs, top_k=None)
    for g, p in zip(got, probs):
        scores = {d["label"]: d["score"] for d in g}
        _close(scores["is_next"], p[0], FP32_SCORE_ATOL)
        _close(scores["not_next"], p[1], FP32_SCORE_ATOL)


def test_feature_extraction_matches_transformers(tiny_head):
    folder = tiny_head("BertForMaskedLM")
    hf = hf_pipeline("feature-extraction", folder)
    ours = edgebert.pipeline("feature-extraction", model=tiny_head("BertForMaskedLM", "float32"))
    for text in TEXTS[:2]:
        want = np.array(hf(text))
        got = np.array(ours(text))
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-4)


# ---- bad input ----------------------------------------------------------------------
def test_bad_inputs_raise_input_error(tiny_head):
    qa = edgebert.pipeline("question-answering", model=tiny_head("BertForQuestionAnswering", "float32"))
    with pytest.raises(InputError, match="context is empty"):
        qa(question="Who?", context="")
    with pytest.raises(InputError, match="needs question= and context="):
        qa(question="Who?")
    with pytest.raises(InputError, match="no room for the context"):
        qa(question="why " * 200, context="Because.")
    long = qa(question="Who designed the tower?", context=CONTEXT * 3)  # longer than 128 positions: windows
    assert (CONTEXT * 3)[long["start"]:long["end"]] == long["answer"]
    fill = edgebert.pipeline("fill-mask", model=tiny_head("BertForMaskedLM", "float32"))
    with pytest.raises(InputError, match="no mask token"):
        fill("There is no mask here.")
    with pytest.raises(InputError, match="more than the model's maximum"):
        fill("[MASK] " + "word " * 300)
    clf = edgebert.pipeline("text-classification", model=tiny_head("BertForSequenceClassification", "float32",
                                                                     num_labels=3))
    with pytest.raises(InputError, match="truncation=True"):
        clf("word " * 300)
    assert clf("word " * 300, truncation=True)[0]["label"].startswith("LABEL_")
    with pytest.raises(InputError, match="unknown task 'translation'.*text-classification"):
        edgebert.pipeline("translation", model=tiny_head("BertForMaskedLM", "float32"))
    with pytest.raises(InputError, match="needs a model with a question-answering head"):
        edgebert.pipeline("question-answering", model=tiny_head("BertForMaskedLM", "float32"))
