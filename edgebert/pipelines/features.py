"""feature-extraction (token vectors, as transformers) and sentence-similarity (pooled, cosine)."""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from .base import Pipeline, tokenizer_options
from .options import Bool, tokenizer_settings, truncation


class FeatureExtractionPipeline(Pipeline):
    """``pipe(text)`` -> last hidden states as nested lists of shape (1, tokens, hidden)
    (``return_tensors=True``: a float32 array). Works on any model file. ``truncation`` and
    ``tokenize_kwargs={"truncation": ..., "max_length": n}`` as transformers takes them."""

    task = "feature-extraction"
    options = (Bool("return_tensors", False, "float32 arrays instead of nested lists", cli=False),
               truncation(), tokenizer_settings("tokenize_kwargs"))

    def process(self, items, return_tensors, truncation, tokenize_kwargs):
        cut, max_length = tokenizer_options(tokenize_kwargs, truncation, "tokenize_kwargs")
        runs = self.run(self.encode(items, truncation=cut, max_length=max_length), ["last_hidden_state"])
        arrays = [r["last_hidden_state"][None] for r in runs]
        return arrays if return_tensors else [a.tolist() for a in arrays]


class SentenceSimilarityPipeline(Pipeline):
    """``pipe({"source_sentence": s, "sentences": [...]})`` -> cosine similarity per sentence,
    with the file's pooling (sentence-transformers' own settings)."""

    task = "sentence-similarity"
    options = (Bool("truncation", True, "cut sentences longer than the model's maximum"),)

    def process(self, items, truncation):
        out = []
        for i, item in enumerate(items):
            if not isinstance(item, dict) or set(item) != {"source_sentence", "sentences"}:
                raise InputError(f'input {i}: expected {{"source_sentence": str, "sentences": [str, ...]}}')
            sentences = item["sentences"]
            if isinstance(sentences, str) or not sentences:
                raise InputError(f"input {i}: sentences must be a non-empty list of texts")
            v = self.model.embed([item["source_sentence"], *sentences], batch_size=self.batch_size,
                                 truncate=truncation).astype(np.float64)
            v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
            out.append([float(x) for x in v[1:] @ v[0]])
        return out
