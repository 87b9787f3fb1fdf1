"""Extractive summarization from sentence embeddings: the most central sentences, in text order.

Centrality is each sentence's summed cosine similarity to the others (degree
centrality, as LexRank without the power iteration): a sentence that many
others resemble states what the text is about. Near-duplicates of a chosen
sentence are skipped so the budget is not spent twice on one idea.
"""
from __future__ import annotations

import re

import numpy as np

from ..errors import InputError
from .base import Pipeline
from .options import Int

SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
DUPLICATE_COSINE = 0.95  # a candidate this close to a chosen sentence adds nothing


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in SENTENCE_END.split(text) if s.strip()]


def rank_sentences(vectors: np.ndarray) -> np.ndarray:
    """(n, d) embeddings -> (n,) centrality: summed cosine similarity to every other sentence."""
    v = vectors.astype(np.float64)
    v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    sim = v @ v.T
    np.fill_diagonal(sim, 0.0)
    return sim.sum(axis=1)


def select(vectors: np.ndarray, lengths: list[int], max_sentences: int, max_chars: int | None) -> list[int]:
    """Indices of the chosen sentences in text order, most central first until the budget is spent."""
    v = vectors.astype(np.float64)
    v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    chosen, used = [], 0
    for i in np.argsort(-rank_sentences(vectors), kind="stable"):
        if len(chosen) == max_sentences:
            break
        if max_chars is not None and chosen and used + lengths[i] > max_chars:
            continue
        if any(v[i] @ v[j] > DUPLICATE_COSINE for j in chosen):
            continue
        chosen.append(int(i))
        used += lengths[i]
    return sorted(chosen)


class SummarizationPipeline(Pipeline):
    """``pipe(document, max_sentences=3, max_chars=None)`` -> {"summary_text", "sentence_indices"}.

    A document is a str (split into sentences here); ``pipe([["s1", "s2", ...]])`` passes one
    already split into sentences.
    Any model file works; its pooling gives the sentence embeddings.
    """

    task = "summarization"
    options = (Int("max_sentences", 3, "the most sentences in a summary", low=1, what="a positive integer"),
               Int("max_chars", None, "the most characters in a summary", nullable=True, low=1,
                   what="a positive integer"))

    def process(self, items, max_sentences, max_chars):
        out = []
        for index, doc in enumerate(items):
            sentences = doc if isinstance(doc, list) else split_sentences(doc) if isinstance(doc, str) else None
            if sentences is None:
                raise InputError(f"input {index}: expected a text or a list of sentences, got {type(doc).__name__}")
            if not sentences:
                raise InputError(f"input {index}: the document has no sentences")
            vectors = self.model.embed(sentences, batch_size=self.batch_size)
            chosen = select(vectors, [len(s) for s in sentences], max_sentences, max_chars)
            out.append({"summary_text": " ".join(sentences[i] for i in chosen), "sentence_indices": chosen})
        return out
