"""Extractive question answering: long contexts in overlapping windows (doc stride), top-k
spans, the impossible (empty) answer, character offsets into the context.

Pre- and postprocessing are transformers' own (4.57's ``QuestionAnsweringPipeline``:
its window sizes, p_mask, ``select_starts_ends``/``decode_spans``, candidate merging),
so the same logits give the same answers in the same order.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from .base import Pipeline
from .options import Bool, Int, top_k


class QuestionAnsweringPipeline(Pipeline):
    """``pipe(question=q, context=c)`` or ``pipe({"question", "context"} | list)`` ->
    ``{"score", "start", "end", "answer"}`` (a list of them when ``top_k`` > 1)."""

    task = "question-answering"
    heads = ("question-answering",)
    options = (
        top_k(1, help="how many answers per question, best first"),
        Int("doc_stride", None, "tokens shared by neighbouring windows of a long context "
            "(default: half a window, at most 128)", nullable=True, low=0),
        Int("max_answer_len", 15, "the longest answer, in tokens", low=1),
        Int("max_seq_len", None, "tokens per window (default: the model's maximum, at most 384)",
            nullable=True, low=1),
        Bool("handle_impossible_answer", False, "allow the empty answer (the context has none)"),
        Bool("align_to_words", True, "answers start and end on whole words"),
    )

    def __call__(self, inputs=None, question=None, context=None, **kwargs):
        if inputs is None:
            if question is None or context is None:
                raise InputError("question-answering needs question= and context= (or {'question', 'context'})")
            if isinstance(question, (list, tuple)) != isinstance(context, (list, tuple)):
                raise InputError("question and context must both be single texts or both be lists")
            inputs = ([{"question": q, "context": c} for q, c in zip(question, context, strict=True)]
                      if isinstance(question, (list, tuple)) else {"question": question, "context": context})
        return super().__call__(inputs, **kwargs)

    def process(self, items, top_k, doc_stride, max_answer_len, max_seq_len, handle_impossible_answer,
                align_to_words):
        max_seq_len, doc_stride = self.window_sizes(max_seq_len, doc_stride)
        windows, owner = [], []
        for i, item in enumerate(items):
            question, context = _question_context(item, i)
            for enc in self.windows(question, context, max_seq_len, doc_stride, i):
                windows.append(enc)
                owner.append(i)
        runs = self.run(windows, ["qa_logits"])
        # Aligning to words can map several token spans onto one answer: ask for spares.
        candidates = top_k * 2 + 10 if align_to_words else top_k
        answers = [[] for _ in items]
        null = [1e6] * len(items)
        for enc, run, i in zip(windows, runs, owner):
            starts, ends, scores, null[i] = select_starts_ends(
                run["qa_logits"][:, 0], run["qa_logits"][:, 1], _p_mask(enc), null[i], candidates,
                handle_impossible_answer, max_answer_len)
            for s, e, score in zip(starts, ends, scores):
                _add_answer(answers[i], items[i]["context"], *_char_span(enc, int(s), int(e), align_to_words),
                            float(score))
        out = []
        for i, found in enumerate(answers):
            if handle_impossible_answer:
                found.append({"score": float(null[i]), "start": 0, "end": 0, "answer": ""})
            found = sorted(found, key=lambda d: d["score"], reverse=True)[:top_k]
            out.append(found[0] if len(found) == 1 else found)
        return out

    def window_sizes(self, max_seq_len, doc_stride) -> tuple[int, int]:
        """transformers' defaults: windows of min(model maximum, 384) tokens, a stride of half
        a window up to 128; a stride longer than the window is refused."""
        max_seq_len = min(self.model.max_length, 384) if max_seq_len is None else max_seq_len
        doc_stride = min(max_seq_len // 2, 128) if doc_stride is None else doc_stride
        if doc_stride > max_seq_len:
            raise InputError(f"doc_stride ({doc_stride}) is larger than max_seq_len ({max_seq_len})")
        return max_seq_len, doc_stride

    def windows(self, question: str, context: str, max_len: int, stride: int, index: int) -> list:
        """[CLS] question [SEP] context-window [SEP], windows overlapping by ``stride`` tokens."""
        room = max_len - len(self.tokenizer.encode(question, add_special_tokens=False).ids) - 3
        if room < 1 or room <= stride:  # the tokenizer would fail (or panic) on these
            raise InputError(f"input {index}: the question leaves no room for the context in {max_len} tokens "
                             f"(doc stride {stride}); shorten the question")
        self.tokenizer.enable_truncation(max_len, stride=stride, strategy="only_second")
        try:
            enc = self.tokenizer.encode(question, context)
        finally:
            self.tokenizer.no_truncation()
        windows = [enc] + list(enc.overflowing)
        longest = max(len(w.ids) for w in windows)
        if longest > self.model.max_length:
            raise InputError(f"input {index}: a window of {longest} tokens is longer than the model's maximum "
                             f"of {self.model.max_length}; pass max_seq_len <= {self.model.max_length}")
        return windows


def select_starts_ends(start, end, p_mask, min_null_score, top_k, handle_impossible_answer, max_answer_len):
    """Best (start, end, score) spans of one window: softmax over allowed tokens, [CLS] as null."""
    start = np.where(p_mask, -10000.0, start)[None]
    end = np.where(p_mask, -10000.0, end)[None]
    start = np.exp(start - start.max(axis=-1, keepdims=True))
    start = start / start.sum()
    end = np.exp(end - end.max(axis=-1, keepdims=True))
    end = end / end.sum()
    if handle_impossible_answer:
        min_null_score = min(min_null_score, float(start[0, 0] * end[0, 0]))
    start[0, 0] = end[0, 0] = 0.0
    outer = np.matmul(start[..., None], end[:, None, :])  # (1, L, L) span probabilities
    candidates = np.tril(np.triu(outer), max_answer_len - 1)
    flat = candidates.flatten()
    if top_k == 1:
        order = [np.argmax(flat)]
    elif len(flat) <= top_k:  # transformers' `<` makes argpartition raise when they are equal
        order = np.argsort(-flat)
    else:
        idx = np.argpartition(-flat, top_k)[0:top_k]
        order = idx[np.argsort(-flat[idx])]
    starts, ends = np.unravel_index(order, candidates.shape)[1:]
    allowed = np.flatnonzero(~p_mask)
    keep = np.isin(starts, allowed) & np.isin(ends, allowed)
    starts, ends = starts[keep], ends[keep]
    return starts, ends, candidates[0, starts, ends], min_null_score


def _p_mask(enc) -> np.ndarray:
    """True where a token cannot be in the answer: all but the context, except that
    transformers leaves every [CLS] (the first token's id) open; the first one scores "no answer"."""
    ids = np.array(enc.ids)
    return np.array([s != 1 for s in enc.sequence_ids]) & (ids != ids[0])


def _add_answer(found: list, context: str, start: int, end: int, score: float) -> None:
    """transformers merges candidates with the same text, case-insensitively and across
    windows: their scores add up on the first one found, which keeps its offsets."""
    text = context[start:end]
    for answer in found:
        if answer["answer"].lower() == text.lower():
            answer["score"] += score
            return
    found.append({"score": score, "start": start, "end": end, "answer": text})


def _char_span(enc, s: int, e: int, align_to_words: bool) -> tuple[int, int]:
    """Token span -> character span in the context; whole words when the tokens split one."""
    if align_to_words:
        try:
            start_word, end_word = enc.token_to_word(s), enc.token_to_word(e)
            return (enc.word_to_chars(start_word, sequence_index=1)[0],
                    enc.word_to_chars(end_word, sequence_index=1)[1])
        except Exception:  # tokenizers raises plain exceptions for tokens outside words
            pass
    return enc.offsets[s][0], enc.offsets[e][1]


def _question_context(item, index: int) -> tuple[str, str]:
    if not isinstance(item, dict) or set(item) != {"question", "context"}:
        raise InputError(f'input {index}: expected {{"question": str, "context": str}}')
    question, context = item["question"], item["context"]
    for name, value in (("question", question), ("context", context)):
        if not isinstance(value, str) or not value.strip():
            raise InputError(f"input {index}: the {name} is empty; question answering needs a question "
                             "and a context to find the answer in")
    return question, context
