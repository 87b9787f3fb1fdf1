"""fill-mask: the top-k tokens for every [MASK], optionally among given targets."""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from .base import Pipeline, softmax, tokenizer_options
from .options import Texts, tokenizer_settings, top_k, truncation


class FillMaskPipeline(Pipeline):
    """``pipe("Paris is the [MASK] of France.")`` -> [{"score", "token", "token_str", "sequence"}, ...]
    (one such list per mask when a text has several). ``tokenizer_kwargs`` (truncation,
    max_length) as transformers takes them."""

    task = "fill-mask"
    heads = ("masked-lm", "pretraining")
    options = (top_k(5, help="how many tokens per mask, best first"),
               Texts("targets", None, "only these words (one token each)", nullable=True),
               truncation(), tokenizer_settings("tokenizer_kwargs"))

    def __init__(self, model, **kwargs):
        super().__init__(model, **kwargs)
        masks = [t.content for t in self.tokenizer.get_added_tokens_decoder().values()
                 if t.special and "MASK" in t.content.upper()]
        if len(masks) != 1:
            raise InputError(f"{self.model.file.path}: the tokenizer has no single mask token (found {masks})")
        self.mask_token = masks[0]
        self.mask_id = self.tokenizer.token_to_id(self.mask_token)
        self.output = "logits" if self.model.head["task"] == "masked-lm" else "prediction_logits"

    def process(self, items, top_k, targets, truncation, tokenizer_kwargs):
        target_ids = None if targets is None else self.target_ids(targets)
        if target_ids is not None:
            top_k = min(top_k, len(target_ids))
        cut, max_length = tokenizer_options(tokenizer_kwargs, truncation, "tokenizer_kwargs")
        encodings = self.encode(items, truncation=cut, max_length=max_length)
        for i, enc in enumerate(encodings):
            if self.mask_id not in enc.ids:
                raise InputError(f"input {i} has no mask token {self.mask_token}; put it where a word is missing")
        out = []
        for enc, run in zip(encodings, self.run(encodings, [self.output])):
            ids = np.array(enc.ids)
            positions = np.flatnonzero(ids == self.mask_id)
            probs = softmax(run[self.output][positions])  # (masks, V)
            if target_ids is not None:
                probs = probs[:, target_ids]
            single = len(positions) == 1
            rows = []
            for m, row in zip(positions, probs):
                best = np.argsort(-row, kind="stable")[:top_k]
                props = []
                for p in best:
                    token = int(target_ids[p]) if target_ids is not None else int(p)
                    filled = ids.copy()
                    filled[m] = token
                    props.append({"score": float(row[p]), "token": token,
                                  "token_str": self.tokenizer.decode([token], skip_special_tokens=False),  # as transformers
                                  "sequence": self.tokenizer.decode(filled.tolist(), skip_special_tokens=single)})
                rows.append(props)
            out.append(rows[0] if single else rows)
        return out

    def target_ids(self, targets) -> np.ndarray:
        """Vocabulary ids of the targets; a word outside the vocabulary stands for its first token."""
        ids = []
        for t in targets:
            tid = self.tokenizer.token_to_id(t)
            if tid is None:
                pieces = self.tokenizer.encode(t, add_special_tokens=False).ids
                if not pieces:
                    continue
                tid = pieces[0]
            ids.append(tid)
        if not ids:
            raise InputError(f"none of the targets {targets} is in the model's vocabulary")
        return np.array(sorted(set(ids)))
