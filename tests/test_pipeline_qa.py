"""Question answering against transformers' own ``question-answering`` pipeline (4.57): the
same answers, offsets and order over real review sentences, short and in several windows."""
from __future__ import annotations

import pytest

import edgebert
from edgebert.errors import InputError

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")
# transformers' postprocess turns torch tensors into arrays the numpy 1 way, once a window
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept:DeprecationWarning")

# Our float32 kernels sum in another order than torch: logits differ by ~1e-6, probabilities
# (and sums of merged candidates' probabilities) by far less than 1e-4.
FP32_SCORE_ATOL = 1e-4
# A random tiny model has flat logits, so int8 rounding reorders close candidates: measured
# 153 of these 156 top-1 answers identical to transformers (0.98). The bar leaves room for
# other CPUs' int8 kernels and catches a broken int8 path, which agrees on almost nothing.
INT8_MIN_TOP1_AGREEMENT = 0.85

QUESTIONS = ["What is the film about?", "Who is the best actor?", "Why is the movie so bad?"]
# Several windows at every max_seq_len below; transformers sums equal answers across them.
LONG_SENTENCES = 6
# [CLS] inside a context stays a possible answer token; "Good"/"GOOD"/"good" merge.
ODD_CONTEXTS = ["[CLS] great [CLS] movie", "Good. GOOD. good film, good."]

# 200 tokens: over the tiny model's 128 positions.
LONG_TEXT = "The film is a charming and often affecting journey. " * 20

CONFIGS = [
    dict(top_k=1, max_seq_len=128),
    dict(top_k=5, max_seq_len=64, doc_stride=16, handle_impossible_answer=True),
    dict(top_k=1, max_seq_len=64, doc_stride=40, handle_impossible_answer=True, max_answer_len=3),
    dict(top_k=5, max_seq_len=96, max_answer_len=30, align_to_words=False),
    dict(top_k=5, max_seq_len=128, doc_stride=0, max_answer_len=1),  # fewer spans than candidates asked
    dict(top_k=1, max_seq_len=96, handle_impossible_answer=True, align_to_words=False),
]


@pytest.fixture(scope="module")
def contexts(pang_lee_texts) -> list[str]:
    """40 single sentences, 10 contexts of several sentences, and the odd ones."""
    longs = [" ".join(pang_lee_texts[40 + LONG_SENTENCES * i:40 + LONG_SENTENCES * (i + 1)]) for i in range(10)]
    return pang_lee_texts[:40] + longs + ODD_CONTEXTS


@pytest.fixture(scope="module")
def hf_qa(tiny_head):
    """transformers' pipeline on one torch thread (one tiny window per call: thread start-up
    would cost more than the work), set before every call because our numba runs set
    OpenMP's thread count, which torch reads, back to all cores."""
    folder = str(tiny_head("BertForQuestionAnswering"))
    pipe = transformers.pipeline("question-answering", model=folder, tokenizer=folder, device="cpu")
    threads = torch.get_num_threads()

    def ask(**kwargs):
        torch.set_num_threads(1)
        return pipe(**kwargs)
    yield ask
    torch.set_num_threads(threads)


def ask_both(qa, hf_qa, contexts, **options) -> tuple[list, list]:
    items = [{"question": q, "context": c} for q in QUESTIONS for c in contexts]
    return qa(items, **options), [hf_qa(**item, **options) for item in items]


def spans(result) -> list[tuple]:
    return [(d["answer"], d["start"], d["end"]) for d in (result if isinstance(result, list) else [result])]


def scores(result) -> list[float]:
    return [d["score"] for d in (result if isinstance(result, list) else [result])]


@pytest.mark.parametrize("options", CONFIGS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_float32_answers_are_transformers(tiny_head, hf_qa, contexts, options):
    qa = edgebert.pipeline("question-answering", model=tiny_head("BertForQuestionAnswering", "float32"))
    sizes = qa.window_sizes(options["max_seq_len"], options.get("doc_stride"))
    assert all(len(qa.windows(q, c, *sizes, 0)) > 1 for q in QUESTIONS for c in contexts[40:50])
    got, want = ask_both(qa, hf_qa, contexts, **options)
    for g, w in zip(got, want):
        assert type(g) is type(w)  # one answer: a dict, as transformers returns it
        assert spans(g) == spans(w)
        assert scores(g) == pytest.approx(scores(w), abs=FP32_SCORE_ATOL)


def test_int8_top1_agreement(tiny_head, hf_qa, contexts):
    qa = edgebert.pipeline("question-answering", model=tiny_head("BertForQuestionAnswering", "int8"))
    got, want = ask_both(qa, hf_qa, contexts, max_seq_len=64, doc_stride=16)
    same = sum(spans(g)[0] == spans(w)[0] for g, w in zip(got, want))
    assert same / len(want) >= INT8_MIN_TOP1_AGREEMENT


@pytest.mark.parametrize("options, message", [
    (dict(doc_stride=65, max_seq_len=64), r"doc_stride \(65\) is larger than max_seq_len \(64\)"),
    (dict(doc_stride=57, max_seq_len=64), "no room for the context"),  # tokenizers panics
    (dict(max_seq_len=5), "no room for the context"),
    (dict(max_seq_len=200), r"longer than the model's maximum of 128; pass max_seq_len <= 128"),
    (dict(top_k=0), "top_k must be a positive integer"),
    (dict(max_answer_len=0), "max_answer_len must be an integer >= 1"),
])
def test_refused_where_transformers_raises(tiny_head, hf_qa, options, message):
    qa = edgebert.pipeline("question-answering", model=tiny_head("BertForQuestionAnswering", "float32"))
    question, context = "Who is it?", LONG_TEXT
    with pytest.raises(BaseException):  # ValueError, a tokenizers panic, torch's size mismatch
        hf_qa(question=question, context=context, **options)
    with pytest.raises(InputError, match=message):
        qa(question=question, context=context, **options)


def test_accepted_where_transformers_answers(tiny_head, hf_qa):
    """A stride of 0 (windows without overlap), one token short of the room, and windows
    longer than the model's maximum when the text fits in fewer tokens anyway."""
    qa = edgebert.pipeline("question-answering", model=tiny_head("BertForQuestionAnswering", "float32"))
    long, short = LONG_TEXT, "A short one."
    for context, options in ((long, dict(doc_stride=0, max_seq_len=64)),
                             (long[:len(long) // 3], dict(doc_stride=56, max_seq_len=64)),  # a window a token
                             (short, dict(max_seq_len=200))):
        got, want = qa(question="Who is it?", context=context, **options), hf_qa(question="Who is it?",
                                                                                context=context, **options)
        assert spans(got) == spans(want)
        assert scores(got) == pytest.approx(scores(want), abs=FP32_SCORE_ATOL)


@pytest.mark.parametrize("item", [{"question": "", "context": "A film."}, {"question": "Who?", "context": " "},
                                  {"question": 3, "context": "A film."}])
def test_bad_input_is_an_input_error(tiny_head, item):
    qa = edgebert.pipeline("question-answering", model=tiny_head("BertForQuestionAnswering", "float32"))
    with pytest.raises(InputError, match="is empty"):
        qa(item)
