"""text-ranking: a cross-encoder (a one-label sequence-classification model) scores (query, document)
pairs, with sentence-transformers' ``CrossEncoder`` semantics.

``pipe({"query": q, "documents": [d0, d1, ...]})`` -> ``[{"corpus_id": i, "score": s}, ...]`` best
first (``CrossEncoder.rank``); the score of a pair is the sigmoid of its logit, as
``CrossEncoder.predict`` gives it for one label (``function_to_apply="none"``: the raw logit). Pairs
are tokenized as the model's tokenizer pairs two texts and cut longest-first to the model's maximum,
as CrossEncoder does.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..text import as_text
from .base import Pipeline, sigmoid
from .options import Bool, Choice, top_k, truncation


class TextRankingPipeline(Pipeline):
    task = "text-ranking"
    heads = ("sequence-classification",)
    options = (
        top_k(None, nullable=True, help="how many documents per query, best first (None: all)"),
        Bool("return_documents", False, "include each document's text in its result"),
        Choice("function_to_apply", "sigmoid", "sigmoid (CrossEncoder.predict's default for one label) or none",
               choices=("sigmoid", "none")),
        truncation(True, help="cut pairs longer than the model's maximum (longest first), as CrossEncoder does"),
    )

    def __init__(self, model, **kwargs):
        super().__init__(model, **kwargs)
        labels = len(self.model.head["id2label"])
        if labels != 1:
            raise InputError(f"text-ranking needs a cross-encoder with one output label; {self.model.file.path} "
                             f"has {labels} (use text-classification for its class scores)")

    def process(self, items, top_k, return_documents, function_to_apply, truncation):
        queries, documents = [], []
        for i, item in enumerate(items):
            if not isinstance(item, dict) or set(item) != {"query", "documents"}:
                raise InputError(f'input {i}: expected {{"query": text, "documents": [texts]}}, got '
                                 f"{sorted(item) if isinstance(item, dict) else type(item).__name__}")
            docs = item["documents"]
            if not isinstance(docs, (list, tuple)) or not docs:
                raise InputError(f"input {i}: documents must be a non-empty list of texts")
            queries.append(as_text(item["query"], i))
            documents.append([as_text(d, j) for j, d in enumerate(docs)])
        scores = iter(self.predict([q for q, docs in zip(queries, documents) for _ in docs],
                                   [d for docs in documents for d in docs], function_to_apply, truncation))
        out = []
        for docs in documents:
            mine = [float(next(scores)) for _ in docs]
            # CrossEncoder.rank: sorted by score, best first (a stable sort: ties keep document order)
            ranked = sorted(({"corpus_id": j, "score": s, **({"text": docs[j]} if return_documents else {})}
                             for j, s in enumerate(mine)), key=lambda r: r["score"], reverse=True)
            out.append(ranked if top_k is None else ranked[:top_k])
        return out

    def predict(self, queries: list[str], documents: list[str], function_to_apply: str = "sigmoid",
                truncation=True) -> np.ndarray:
        """One score per (query, document) pair, float32: CrossEncoder.predict for one label."""
        logits = np.stack([r["logits"] for r in self.run(self.encode(queries, documents, bool(truncation)),
                                                         ["logits"])])[:, 0]
        return sigmoid(logits) if function_to_apply == "sigmoid" else logits
