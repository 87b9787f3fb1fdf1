"""zero-shot-classification on an NLI model: each candidate label becomes a hypothesis."""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from .base import Pipeline, softmax
from .options import Bool, Text, Texts


class ZeroShotClassificationPipeline(Pipeline):
    """``pipe(text, candidate_labels=[...])`` -> {"sequence", "labels", "scores"} best first.

    Scores as transformers: softmax of the entailment logits across labels, or
    (``multi_label``, or one label) entailment vs contradiction per label.
    """

    task = "zero-shot-classification"
    heads = ("sequence-classification",)
    options = (
        Texts("candidate_labels", None, "the labels to choose from (a list, or comma-separated)", comma=True),
        Text("hypothesis_template", "This example is {}.", "the hypothesis each label is put into ({} for it)"),
        Bool("multi_label", False, "score each label on its own (entailment vs contradiction)"),
    )

    def __init__(self, model, **kwargs):
        super().__init__(model, **kwargs)
        labels = [x.lower() for x in self.labels()]
        entail = [i for i, x in enumerate(labels) if x.startswith("entail")]
        if not entail:
            raise InputError(f"zero-shot-classification needs an NLI model with an 'entailment' label; "
                             f"this one has {self.labels()}")
        self.entail = entail[0]
        self.contra = -1 if self.entail == 0 else 0

    def __call__(self, inputs, *args, **kwargs):
        """``pipe(text, candidate_labels)``: the labels may come second, as transformers takes them."""
        if args:
            if len(args) > 1 or "candidate_labels" in kwargs:
                raise InputError("zero-shot-classification takes (inputs, candidate_labels): got more "
                                 "positional arguments, or candidate_labels both ways")
            kwargs["candidate_labels"] = args[0]
        return super().__call__(inputs, **kwargs)

    def process(self, items, candidate_labels, hypothesis_template, multi_label):
        if not candidate_labels:
            raise InputError("zero-shot-classification needs candidate_labels (a list, or a comma-separated str)")
        if hypothesis_template.format(candidate_labels[0]) == hypothesis_template:
            raise InputError(f"hypothesis_template {hypothesis_template!r} has no {{}} for the label")
        n = len(candidate_labels)
        premises = [t for t in items for _ in range(n)]
        hypotheses = [hypothesis_template.format(label) for _ in items for label in candidate_labels]
        encodings = self.encode_pairs(premises, hypotheses)
        logits = np.stack([r["logits"] for r in self.run(encodings, ["logits"])]).reshape(len(items), n, -1)
        if multi_label or n == 1:
            scores = softmax(logits[..., [self.contra, self.entail]])[..., 1]
        else:
            scores = softmax(logits[..., self.entail])
        out = []
        for text, row in zip(items, scores):
            order = list(reversed(row.argsort()))
            out.append({"sequence": text, "labels": [candidate_labels[i] for i in order],
                        "scores": [float(row[i]) for i in order]})
        return out

    def encode_pairs(self, premises, hypotheses):
        """Pairs truncated on the premise only, so the hypothesis (the label) is never cut."""
        self.tokenizer.enable_truncation(self.model.max_length, strategy="only_first")
        try:
            return self.encode(premises, hypotheses)
        finally:
            self.tokenizer.no_truncation()
