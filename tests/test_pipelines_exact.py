"""Every pipeline against transformers 4.57's own pipeline of its task, on real sentences.

Inputs are gensim's Pang-Lee review sentences (accents, hyphenated words,
numbers, punctuation) and, for token classification, also news sentences with
capitals and numbers. The float32 files must give transformers' answers: the
same labels, entity spans (start, end, word, entity group) and tokens in the
same order, scores within FP32_SCORE_ATOL. The one allowance is a near-tie:
two choices whose transformers probabilities differ by less than NEAR_TIE may
come in either order (such swaps are counted and must stay rare).

int8 files are measured, not held to transformers' answers (random tiny heads
have near-ties that quantization flips): test_int8_agreement prints the
figures (pytest -s) and asserts only floors far below them.
"""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest

import edgebert
from edgebert.errors import InputError

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
logging.getLogger("transformers").setLevel(logging.ERROR)

# Float32 logits agree with transformers' to ~1e-6 (different summation order,
# tests/test_heads.py); through a softmax or sigmoid a probability moves by less.
# 1e-4 leaves 100x room and still catches any pre- or post-processing slip
# (a wrong token, function or label moves a score by far more).
FP32_SCORE_ATOL = 1e-4
# Last hidden states (LayerNorm outputs, of order 1): measured max |diff| 1.2e-6.
FP32_HIDDEN_ATOL = 1e-4
# Two choices closer than this in transformers' probabilities may rank either way:
# a 1e-6 difference in the logits decides them (seen: two zero-shot labels at
# 0.16603504 and 0.16603508 here, one equal float32 value there).
NEAR_TIE = 1e-5
MAX_TIE_FRACTION = 0.02  # swaps allowed per compared position: ties cannot hide a real mismatch

N = 40  # real sentences per call
NLI = {0: "entailment", 1: "neutral", 2: "contradiction"}
NLI_LAST = {0: "contradiction", 1: "neutral", 2: "entailment"}  # then the contradiction id is 0
NER = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"}
SENTIMENT = dict(num_labels=3, id2label={0: "neg", 1: "neu", 2: "pos"})  # as in tests/test_pipelines.py
STRATEGIES = ["none", "simple", "first", "average", "max"]


@pytest.fixture(scope="module", autouse=True)
def restore_torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def one_torch_thread() -> None:
    """Before each transformers run: small inputs run faster on one torch thread (~4x here, ~10x
    beside busy cores). Again each time: Numba's OpenMP pool, started by our first forward pass,
    sets the process's OpenMP thread count that torch also reads."""
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def texts(pang_lee_texts) -> list[str]:
    return pang_lee_texts[:N]


@pytest.fixture(scope="module")
def ner_texts(pang_lee_texts) -> list[str]:
    """Lower-case reviews (and every accented one) and news sentences with capitals and numbers."""
    from edgebert.corpora import lee_sentences

    accented = [t for t in pang_lee_texts if any(ord(c) > 127 for c in t)]
    news = [s for s in lee_sentences() if any(c.isdigit() for c in s) and any(c.isupper() for c in s[1:])]
    return pang_lee_texts[:30] + accented + news[:14]


_PIPES: dict = {}


def theirs(tiny_head, task, model_class, **cfg):
    """transformers' pipeline over the tiny model; its answers kept per (inputs, options), so the
    int8 measurement reuses the float32 tests' calls."""
    folder = tiny_head(model_class, **cfg)
    key = (str(folder), task)
    if key not in _PIPES:
        pipe = transformers.pipeline(task, model=str(folder), tokenizer=str(folder), device="cpu")
        answers: dict = {}

        def call(inputs, **kw):
            k = (repr(inputs), repr(sorted(kw.items())))
            if k not in answers:
                one_torch_thread()
                answers[k] = pipe(inputs, **kw)  # one input per forward pass, its default
            return answers[k]
        call.pipe = pipe
        _PIPES[key] = call
    return _PIPES[key]


def ours(tiny_head, task, model_class, dtype="float32", **cfg):
    return edgebert.pipeline(task, model=tiny_head(model_class, dtype, **cfg), threads=1)


def same_entry(mine: dict, their: dict) -> None:
    """Equal on every key but the score; scores within FP32_SCORE_ATOL."""
    assert {k: v for k, v in mine.items() if k != "score"} == {k: v for k, v in their.items() if k != "score"}
    assert abs(mine["score"] - float(their["score"])) <= FP32_SCORE_ATOL, (mine, their)


class Ties:
    """Compares ranked answers, counting positions and near-tie swaps."""

    def __init__(self):
        self.positions = self.swaps = 0

    def ranking(self, mine: list[dict], their: list[dict], key: str, reference) -> None:
        """``mine`` equals ``their`` (ranked dicts) position by position, except that a position may
        hold another choice whose transformers probability is within NEAR_TIE of transformers' choice
        there (its score then checked against that probability). ``reference()`` gives transformers'
        probability of every choice (a dict, or an array over token ids); asked only on a swap."""
        assert len(mine) == len(their), (mine, their)
        assert len({d[key] for d in mine}) == len(mine)
        probs = None
        for m, t in zip(mine, their):
            self.positions += 1
            if m[key] == t[key]:
                same_entry(m, t)
                continue
            probs = reference() if probs is None else probs
            assert abs(probs[m[key]] - probs[t[key]]) < NEAR_TIE, (m, t)
            assert abs(m["score"] - probs[m[key]]) <= FP32_SCORE_ATOL, (m, probs[m[key]])
            self.swaps += 1

    def check(self, what: str) -> None:
        print(f"{what}: {self.positions} positions, {self.swaps} near-tie swaps")
        assert self.positions > 0
        assert self.swaps <= MAX_TIE_FRACTION * self.positions


def as_list(result) -> list[dict]:
    return result if isinstance(result, list) else [result]


# ---- text-classification ---------------------------------------------------------
# The model's default function (the legacy call without top_k, and top_k), then each function
# by name (any case, as transformers takes it). Models other than the first take the first
# three: their default function is what differs.
OPTIONS = [{}, {"top_k": None}, {"top_k": 2}, {"top_k": 1}, {"function_to_apply": "sigmoid"},
           {"function_to_apply": "NONE", "top_k": None}, {"function_to_apply": "softmax", "top_k": 2}]
CONFIGS = {"single_label": SENTIMENT,  # softmax
           "multi_label": dict(SENTIMENT, problem_type="multi_label_classification"),  # sigmoid
           "regression": dict(SENTIMENT, problem_type="regression"),  # none
           "one_label": dict(num_labels=1)}  # sigmoid


@pytest.mark.parametrize("config", list(CONFIGS))
def test_text_classification_exact(tiny_head, texts, config):
    args = ("text-classification", "BertForSequenceClassification")
    hf, mine = theirs(tiny_head, *args, **CONFIGS[config]), ours(tiny_head, *args, **CONFIGS[config])
    pairs = [{"text": a, "text_pair": b} for a, b in zip(texts, reversed(texts))]
    calls = [(texts, kw) for kw in (OPTIONS if config == "single_label" else OPTIONS[:3])] + [(pairs, {})]
    if config == "single_label":  # pairs ranked; inputs cut to max_length tokens
        calls += [(pairs, {"top_k": None}), (texts, {"truncation": True, "max_length": 8, "top_k": None}),
                  (pairs, {"truncation": True, "max_length": 12})]
    ties = Ties()
    for inputs, kw in calls:
        for x, m, t in zip(inputs, mine(inputs, **kw), hf(inputs, **kw), strict=True):
            assert isinstance(m, dict) == isinstance(t, dict)  # the default call: one dict per input

            def reference(x=x, kw=kw):
                return {d["label"]: d["score"] for d in hf(x, **{**kw, "top_k": None})}
            ties.ranking(as_list(m), as_list(t), "label", reference)
    ties.check(f"text-classification {config}")
    # one input: the default call wraps a str in a list, not a pair; with top_k, the list
    for one in (texts[0], pairs[0]):
        for kw in ({}, {"top_k": 1}, {"top_k": None}):
            m, t = mine(one, **kw), hf.pipe(one, **kw)
            assert type(m) is type(t) and len(as_list(m)) == len(as_list(t))


# ---- zero-shot-classification ----------------------------------------------------
LABEL_SETS = [["positive", "negative"], ["comedy", "drama", "action movie", "documentary"], ["good"],
              "funny, sad,boring"]


@pytest.mark.parametrize("nli", [NLI, NLI_LAST], ids=["entailment_first", "entailment_last"])
def test_zero_shot_exact(tiny_head, texts, nli):
    cfg = dict(num_labels=3, id2label=nli, label2id={v: k for k, v in nli.items()})
    args = ("zero-shot-classification", "BertForSequenceClassification")
    hf, mine = theirs(tiny_head, *args, **cfg), ours(tiny_head, *args, **cfg)
    calls = [(labels, {"multi_label": multi}) for labels in LABEL_SETS for multi in (False, True)]
    calls.append((LABEL_SETS[1], {"hypothesis_template": "The critic thinks it is {}."}))
    if nli is NLI_LAST:  # enough to show the other contradiction id
        calls = calls[2:4]
    ties = Ties()
    for labels, kw in calls:
        for m, t in zip(mine(texts, candidate_labels=labels, **kw), hf(texts, candidate_labels=labels, **kw),
                        strict=True):
            assert m["sequence"] == t["sequence"]
            ranked = [[{"label": a, "score": s} for a, s in zip(r["labels"], r["scores"])] for r in (m, t)]
            ties.ranking(*ranked, "label", lambda t=t: dict(zip(t["labels"], t["scores"])))
    ties.check(f"zero-shot, {nli[0]} first")
    # candidate labels as the second positional argument, as transformers takes them
    assert mine(texts[0], LABEL_SETS[0]) == mine(texts[0], candidate_labels=LABEL_SETS[0])
    assert mine(texts[0], LABEL_SETS[0])["labels"] == hf.pipe(texts[0], LABEL_SETS[0])["labels"]
    with pytest.raises(InputError, match="candidate_labels"):
        mine(texts[0], LABEL_SETS[0], candidate_labels=LABEL_SETS[1])


# ---- token-classification --------------------------------------------------------
# every strategy with the default ignore_labels; none ignored; two ignored
TOKEN_OPTIONS = [{"aggregation_strategy": s} for s in STRATEGIES] + [
    {"aggregation_strategy": "none", "ignore_labels": []}, {"aggregation_strategy": "simple", "ignore_labels": []},
    {"aggregation_strategy": "max", "ignore_labels": ["O", "B-PER"]}]


def has_near_tie(pipe, text: str) -> bool:
    """Whether some token's best two labels are within NEAR_TIE in transformers' model."""
    one_torch_thread()
    with torch.no_grad():
        logits = pipe.model(**pipe.tokenizer(text, return_tensors="pt", truncation=True)).logits[0]
    top2 = np.sort(logits.softmax(-1).numpy(), axis=-1)[:, -2:]
    return bool((top2[:, 1] - top2[:, 0] < NEAR_TIE).any())


def without_scores(entities: list[dict]) -> list[dict]:
    return [{k: v for k, v in d.items() if k != "score"} for d in entities]


def test_token_classification_exact(tiny_head, ner_texts):
    args = ("token-classification", "BertForTokenClassification")
    hf, mine = theirs(tiny_head, *args, num_labels=5, id2label=NER), ours(tiny_head, *args, num_labels=5, id2label=NER)
    tied, compared = set(), 0
    for kw in TOKEN_OPTIONS:
        want = hf(ner_texts, **kw)
        for text, m, t in zip(ner_texts, mine(ner_texts, **kw), want, strict=True):
            if without_scores(m) != without_scores(t) and has_near_tie(hf.pipe, text):
                tied.add(text)
                continue
            assert len(m) == len(t), (kw, text, m, t)
            for a, b in zip(m, t):
                same_entry(a, b)
            compared += len(t)
        if kw.get("ignore_labels") == [] and kw["aggregation_strategy"] == "none":
            # the inputs hold what aggregation must get right: words of several pieces,
            # accents, numbers, punctuation
            tokens = [d for r in want for d in r]
            assert sum(d["word"].startswith("##") for d in tokens) > 50
            assert any(ord(c) > 127 for x, r in zip(ner_texts, want) for d in r for c in x[d["start"]:d["end"]])
            assert any(d["word"].isdigit() for d in tokens)
            assert {"-", "'", ",", "."} <= {d["word"] for d in tokens}
        elif kw.get("ignore_labels") == []:  # groups really formed
            assert any(" " in d["word"] for r in want for d in r) and any(len(r) > 1 for r in want)
    print(f"token-classification: {compared} entities compared over {len(ner_texts)} inputs x "
          f"{len(TOKEN_OPTIONS)} settings; {len(tied)} inputs differ at a near-tie")
    assert len(tied) <= MAX_TIE_FRACTION * len(ner_texts)
    # strategies by name in any case, as transformers takes them
    assert mine(ner_texts[:3], aggregation_strategy="FIRST") == mine(ner_texts[:3], aggregation_strategy="first")


# ---- fill-mask -------------------------------------------------------------------
def masked(texts, masks: int) -> list[str]:
    """Each text of at least 2 * ``masks`` words with ``masks`` of them (spread out) as [MASK]."""
    out = []
    for n, text in enumerate(texts):
        words = text.split()
        if len(words) < masks * 2:
            continue
        for j in range(masks):
            words[(n + j * len(words) // masks) % len(words)] = "[MASK]"
        out.append(" ".join(words))
    return out


def mask_probabilities(pipe, text: str, tokenizer_kwargs=None) -> list[np.ndarray]:
    """transformers' model: per mask, the probability of every vocabulary id."""
    one_torch_thread()
    enc = pipe.tokenizer(text, return_tensors="pt", **(tokenizer_kwargs or {}))
    with torch.no_grad():
        logits = pipe.model(**enc).logits[0]
    positions = (enc["input_ids"][0] == pipe.tokenizer.mask_token_id).nonzero()[:, 0]
    return [logits[p].softmax(-1).numpy() for p in positions]


# targets: words outside the vocabulary (their first piece stands), spaced, cased, a piece, twice
ODD_TARGETS = {"targets": ["unbelievably", "zzzqx", "Paris", " film", "##s", "good", "good"], "top_k": 4}
FILL_OPTIONS = [{}, {"top_k": 10}, {"targets": ["good", "bad", "movie", "film"]}, ODD_TARGETS, {"targets": "film"}]


def test_fill_mask_exact(tiny_head, pang_lee_texts):
    hf, mine = theirs(tiny_head, "fill-mask", "BertForMaskedLM"), ours(tiny_head, "fill-mask", "BertForMaskedLM")
    one, two = masked(pang_lee_texts[:N + 4], 1)[:N], masked(pang_lee_texts[N:2 * N + 8], 2)[:N]
    first = ["[MASK] " + " ".join(t.split()[1:]) for t in pang_lee_texts[:N]]  # kept when cut to 6 tokens
    assert len(one) == len(two) == N
    cut = {"tokenizer_kwargs": {"truncation": True, "max_length": 6}}
    ties = Ties()
    for inputs, options in ((one, FILL_OPTIONS), (two, [{}, ODD_TARGETS]), (first, [cut])):
        for kw in options:
            for text, m, t in zip(inputs, mine(inputs, **kw), hf(inputs, **kw), strict=True):
                if isinstance(t[0], dict):  # one mask: a list of tokens; several: a list per mask
                    m, t = [m], [t]
                assert len(m) == len(t)
                for i, (mm, tm) in enumerate(zip(m, t)):
                    ties.ranking(mm, tm, "token", lambda text=text, i=i, kw=kw: mask_probabilities(
                        hf.pipe, text, kw.get("tokenizer_kwargs"))[i])
    ties.check("fill-mask")


# ---- feature-extraction ----------------------------------------------------------
def test_feature_extraction_exact(tiny_head, texts):
    args = ("feature-extraction", "BertForMaskedLM")
    hf, mine = theirs(tiny_head, *args), ours(tiny_head, *args)
    for kw in ({}, {"truncation": True}, {"tokenize_kwargs": {"truncation": True, "max_length": 7}},
               {"tokenize_kwargs": {"max_length": 5}}):  # max_length alone cuts too, as there
        for m, t in zip(mine(texts, return_tensors=True, **kw), hf(texts, return_tensors=True, **kw), strict=True):
            assert m.shape == tuple(t.shape)
            np.testing.assert_allclose(m, t.numpy(), atol=FP32_HIDDEN_ATOL)
    assert mine(texts[0]) == mine(texts[0], return_tensors=True).tolist()
    with pytest.raises(InputError, match="truncation given twice"):
        mine(texts[0], truncation=True, tokenize_kwargs={"truncation": True})
    with pytest.raises(InputError, match="only truncation and max_length"):
        mine(texts[0], tokenize_kwargs={"padding": "max_length"})


# ---- int8: measured, not held to transformers' answers -----------------------------
def test_int8_agreement(tiny_head, texts, ner_texts, pang_lee_texts):
    """How often the int8 files give transformers' top label / entity spans / top token, over the
    float32 tests' inputs; printed (pytest -s), with floors only."""
    seq, tok, mlm = "BertForSequenceClassification", "BertForTokenClassification", "BertForMaskedLM"
    figures = {}
    task = ("text-classification", seq)
    figures["text-classification top label"] = [
        (m["label"], t["label"]) for m, t in zip(ours(tiny_head, *task, "int8", **SENTIMENT)(texts),
                                                 theirs(tiny_head, *task, **SENTIMENT)(texts))]
    task, nli, kw = ("zero-shot-classification", seq), dict(num_labels=3, id2label=NLI), {"candidate_labels": LABEL_SETS[1]}
    nli["label2id"] = {v: k for k, v in NLI.items()}
    figures["zero-shot top label of 4"] = [
        (m["labels"][0], t["labels"][0]) for m, t in zip(ours(tiny_head, *task, "int8", **nli)(texts, **kw),
                                                         theirs(tiny_head, *task, **nli)(texts, **kw))]
    task, ner = ("token-classification", tok), dict(num_labels=5, id2label=NER)
    int8, hf = ours(tiny_head, *task, "int8", **ner), theirs(tiny_head, *task, **ner)
    for kw in ({"aggregation_strategy": "none"}, {"aggregation_strategy": "simple"}):
        key = "entity" if kw["aggregation_strategy"] == "none" else "entity_group"
        spans = [[[(d["start"], d["end"], d[key]) for d in r] for r in run(ner_texts, **kw)] for run in (int8, hf)]
        figures[f"token-classification entities of an input, {kw['aggregation_strategy']}"] = list(zip(*spans))
    kw = {"aggregation_strategy": "none", "ignore_labels": []}
    figures["token-classification token labels"] = [
        (a["entity"], b["entity"]) for m, t in zip(int8(ner_texts, **kw), hf(ner_texts, **kw)) for a, b in zip(m, t)]
    one = masked(pang_lee_texts[:N + 4], 1)[:N]
    got, want = ours(tiny_head, "fill-mask", mlm, "int8")(one), theirs(tiny_head, "fill-mask", mlm)(one)
    figures["fill-mask top token"] = [(m[0]["token"], t[0]["token"]) for m, t in zip(got, want)]
    figures["fill-mask top-5 set"] = [({d["token"] for d in m}, {d["token"] for d in t}) for m, t in zip(got, want)]
    hidden = zip(ours(tiny_head, "feature-extraction", mlm, "int8")(texts, return_tensors=True),
                 theirs(tiny_head, "feature-extraction", mlm)(texts, return_tensors=True))
    hidden = [(m[0], t[0].numpy()) for m, t in hidden]
    cosines = [float((m * t).sum() / np.linalg.norm(m) / np.linalg.norm(t)) for m, t in hidden]

    print("\nint8 files against transformers (float32), same inputs:")
    shares = {}
    for name, pairs in figures.items():
        shares[name] = sum(a == b for a, b in pairs) / len(pairs)
        print(f"  {name}: {sum(a == b for a, b in pairs)}/{len(pairs)} = {shares[name]:.3f}")
    print(f"  feature-extraction hidden states: cosine min {min(cosines):.5f} over {len(cosines)} inputs, "
          f"max |diff| {max(float(np.abs(m - t).max()) for m, t in hidden):.3f}")
    # floors: chance for the zero-shot labels (the random NLI head scores them within
    # ~1e-4 of each other), half elsewhere
    assert shares.pop("zero-shot top label of 4") > 0.25
    assert min(shares.values()) >= 0.5, shares
    assert min(cosines) > 0.99
