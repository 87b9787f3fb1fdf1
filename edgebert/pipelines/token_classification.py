"""token-classification (NER) with transformers' aggregation strategies and character offsets."""
from __future__ import annotations

import numpy as np

from .base import Pipeline, softmax
from .options import Choice, Texts

STRATEGIES = ("none", "simple", "first", "average", "max")


class TokenClassificationPipeline(Pipeline):
    """``pipe(text, aggregation_strategy="simple")`` -> entities with ``start``/``end`` character
    offsets into the text. Over-long texts are truncated, as transformers does."""

    task = "token-classification"
    heads = ("token-classification",)
    options = (
        Choice("aggregation_strategy", "none", "how tokens group into entities", choices=STRATEGIES),
        Texts("ignore_labels", None, "labels left out of the result (default: O)", nullable=True),
    )

    def process(self, items, aggregation_strategy, ignore_labels):
        if ignore_labels is None:
            ignore_labels = ("O",)
        encodings = self.encode(items, truncation=True)
        runs = self.run(encodings, ["logits"])
        return [self.entities(text, enc, softmax(run["logits"]), aggregation_strategy, set(ignore_labels))
                for text, enc, run in zip(items, encodings, runs)]

    def entities(self, text, enc, scores, strategy, ignore) -> list[dict]:
        pre = self.pre_entities(text, enc, scores)
        if strategy in ("none", "simple"):
            entities = [self.token_entity(p) for p in pre]
        else:
            entities = [self.word_entity(group, strategy) for group in _words(pre)]
        if strategy != "none":
            entities = self.group(entities)
        key = "entity" if strategy == "none" else "entity_group"
        return [e for e in entities if e[key] not in ignore]

    def pre_entities(self, text, enc, scores) -> list[dict]:
        """Non-special tokens with scores, offsets and whether they continue a word (WordPiece ##)."""
        unk_token = getattr(self.tokenizer.model, "unk_token", None)
        unk = self.tokenizer.token_to_id(unk_token) if unk_token else None
        out = []
        for idx, (tid, special, (start, end)) in enumerate(zip(enc.ids, enc.special_tokens_mask, enc.offsets)):
            if special:
                continue
            word = self.tokenizer.id_to_token(tid)
            ref = text[start:end]
            subword = len(word) != len(ref)
            if tid == unk:
                word, subword = ref, False
            out.append({"word": word, "scores": scores[idx], "start": start, "end": end, "index": idx,
                        "is_subword": subword})
        return out

    def token_entity(self, p: dict) -> dict:
        best = int(p["scores"].argmax())
        return {"entity": self.labels()[best], "score": float(p["scores"][best]), "index": p["index"],
                "word": p["word"], "start": p["start"], "end": p["end"]}

    def word_entity(self, group: list[dict], strategy: str) -> dict:
        if strategy == "first":
            scores = group[0]["scores"]
        elif strategy == "max":
            scores = max(group, key=lambda p: p["scores"].max())["scores"]
        else:
            scores = np.nanmean(np.stack([p["scores"] for p in group]), axis=0)
        best = int(scores.argmax())
        return {"entity": self.labels()[best], "score": float(scores[best]), "word": self.join([p["word"] for p in group]),
                "start": group[0]["start"], "end": group[-1]["end"]}

    def group(self, entities: list[dict]) -> list[dict]:
        """Adjacent entities of one tag merge unless the next one says B- (transformers' rule)."""
        groups, current = [], []
        for e in entities:
            if current:
                bi, tag = _tag(e["entity"])
                _, last = _tag(current[-1]["entity"])
                if tag != last or bi == "B":
                    groups.append(self.merge(current))
                    current = []
            current.append(e)
        if current:
            groups.append(self.merge(current))
        return groups

    def merge(self, entities: list[dict]) -> dict:
        return {"entity_group": entities[0]["entity"].split("-", 1)[-1],
                "score": float(np.nanmean([e["score"] for e in entities])),
                "word": self.join([e["word"] for e in entities]),
                "start": entities[0]["start"], "end": entities[-1]["end"]}

    def join(self, tokens: list[str]) -> str:
        return self.tokenizer.decoder.decode(tokens)


def _words(pre: list[dict]) -> list[list[dict]]:
    words = []
    for p in pre:
        if words and p["is_subword"]:
            words[-1].append(p)
        else:
            words.append([p])
    return words


def _tag(name: str) -> tuple[str, str]:
    if name.startswith(("B-", "I-")):
        return name[0], name[2:]
    return "I", name
