"""text-classification (single texts and pairs) and next-sentence, as transformers returns them."""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from .base import Pipeline, sigmoid, softmax, tokenizer_options
from .options import UNSET, Choice, Bool, max_length, top_k, truncation

FUNCTIONS = ("softmax", "sigmoid", "none")


class TextClassificationPipeline(Pipeline):
    """``pipe(text | {"text", "text_pair"} | list)``; ``top_k`` unset gives the best label only
    (one dict per input, a single str wrapped in a list, as transformers does)."""

    task = "text-classification"
    heads = ("sequence-classification",)
    options = (
        top_k(UNSET, nullable=True, help="how many labels per input, best first (None: all; unset: the best "
                                         "one, not in a list)"),
        Choice("function_to_apply", None, "softmax, sigmoid or none (default: from the model's problem type)",
               nullable=True, choices=FUNCTIONS),
        truncation(),
        max_length(),
    )

    def __call__(self, inputs, **kwargs):
        results = super().__call__(inputs, **kwargs)
        legacy = {**self.defaults, **kwargs}.get("top_k", UNSET) is UNSET
        return [results] if legacy and isinstance(inputs, str) else results

    def process(self, items, top_k, function_to_apply, truncation, max_length):
        legacy, top_k = top_k is UNSET, None if top_k is UNSET else top_k
        texts, pairs = split_pairs(items)
        cut, max_length = tokenizer_options({"max_length": max_length} if max_length else {}, truncation, "options")
        encodings = self.encode(texts, pairs, cut, max_length)
        logits = np.stack([r["logits"] for r in self.run(encodings, ["logits"])])
        scores = self.scores(logits, function_to_apply)
        labels = self.labels()
        out = []
        for row in scores:
            if legacy:
                out.append({"label": labels[int(row.argmax())], "score": float(row.max())})
                continue
            ranked = sorted(({"label": labels[i], "score": float(s)} for i, s in enumerate(row)),
                            key=lambda d: d["score"], reverse=True)
            out.append(ranked if top_k is None else ranked[:top_k])
        return out

    def scores(self, logits: np.ndarray, function: str | None) -> np.ndarray:
        """transformers' default: regression -> none; multi-label or one label -> sigmoid; else softmax.
        ``function`` is checked (lower case) by its option."""
        if function is None:
            problem = self.model.head.get("problem_type")
            if problem == "regression":
                function = "none"
            elif problem == "multi_label_classification" or logits.shape[1] == 1:
                function = "sigmoid"
            else:
                function = "softmax"
        if function == "softmax":
            return softmax(logits)
        return sigmoid(logits) if function == "sigmoid" else logits


class NextSentencePipeline(TextClassificationPipeline):
    """``pipe({"text": a, "text_pair": b})`` -> {"label": "is_next" | "not_next", "score"}."""

    task = "next-sentence"
    heads = ("next-sentence", "pretraining")
    options = (top_k(UNSET, nullable=True, help="how many labels per pair (None: both; unset: the best one)"),
               Bool("truncation", False, "cut pairs longer than the model's maximum"))

    def process(self, items, top_k, truncation):
        legacy, top_k = top_k is UNSET, None if top_k is UNSET else top_k
        texts, pairs = split_pairs(items)
        if pairs is None:
            raise InputError('next-sentence needs text pairs: {"text": first, "text_pair": second}')
        name = "logits" if self.model.head["task"] == "next-sentence" else "seq_relationship_logits"
        runs = self.run(self.encode(texts, pairs, truncation), [name])
        labels = self.labels()
        out = []
        for row in softmax(np.stack([r[name] for r in runs])):
            ranked = sorted(({"label": labels[i], "score": float(s)} for i, s in enumerate(row)),
                            key=lambda d: d["score"], reverse=True)
            out.append(ranked[0] if legacy else ranked if top_k is None else ranked[:top_k])
        return out


def split_pairs(items: list) -> tuple[list, list | None]:
    """Plain texts, or all {"text", "text_pair"} dicts (a mix is refused)."""
    if all(isinstance(x, dict) for x in items):
        for i, x in enumerate(items):
            if set(x) != {"text", "text_pair"}:
                raise InputError(f'input {i}: a pair must be {{"text": ..., "text_pair": ...}}, got keys {sorted(x)}')
        return [x["text"] for x in items], [x["text_pair"] for x in items]
    if any(isinstance(x, dict) for x in items):
        raise InputError("inputs mix plain texts and text pairs; pass one kind per call")
    return items, None
