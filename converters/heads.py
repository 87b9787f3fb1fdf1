"""Task heads of any family: a few named slots (docs/format.md) and an ``edgebert.head`` record.

The record (task, labels) travels in the file; converters/graph.py turns it,
with the family's ``HeadGraph``, into graph nodes after the encoder.
"""
from __future__ import annotations

import numpy as np

from edgebert import names
from edgebert.errors import UnsupportedModel

from .checkpoint import Checkpoint
from .family import Head, Part
from .spec import ModelSpec, Slot

LABELLED_TASKS = ("sequence-classification", "token-classification")
MLM_TASKS = ("masked-lm", "pretraining")


def fill_head(spec: ModelSpec, ckpt: Checkpoint, cfg: dict, head: Head, prefix: str) -> None:
    """The head's slots from the checkpoint, and its record in ``spec.head``."""
    spec.head = {"task": head.task}
    for p in head.parts:
        _fill_part(spec, ckpt, p, prefix)
    if head.task in LABELLED_TASKS:
        spec.head.update(id2label=_id2label(cfg, spec.slots[names.CLASSIFIER.prefix() + names.BIAS].shape[0]),
                         problem_type=cfg.get("problem_type"))
    if head.labels is not None:
        spec.head["id2label"] = dict(head.labels)
    if head.task in MLM_TASKS:
        spec.head["tied_decoder"] = _fill_decoder(spec, ckpt, cfg, head.decoder)


def _fill_part(spec: ModelSpec, ckpt: Checkpoint, p: Part, prefix: str) -> None:
    H = spec.config.hidden_size
    for alternatives, (role, suffix) in p.items():
        sources = [a.format(base=prefix) for a in alternatives]
        value, dst = ckpt.take_any(*sources), role.prefix() + suffix
        for other in sources[1:]:  # a tied copy saved under its second name too must be the same tensor
            if other in ckpt and not np.array_equal(ckpt.take(other), value):
                raise UnsupportedModel(f"{ckpt.where}: {sources[0]!r} and {other!r} should be one tied "
                                       "tensor but differ")
        spec.add_slots({dst: Slot(tuple(value.shape), role, suffix)})
        spec[dst] = value
        if suffix == names.WEIGHT and role.kind != "norm" and value.shape[-1] != H:
            raise UnsupportedModel(f"head weight {dst} has shape {tuple(value.shape)}; "
                                   f"its input must be hidden_size {H}")


def _fill_decoder(spec: ModelSpec, ckpt: Checkpoint, cfg: dict, name: str) -> bool:
    """True when the MLM decoder reuses token_embd (tied, the default: transformers saves no
    decoder weight then); else an own slot."""
    word = spec.slots[names.TOKEN_EMBD.prefix() + names.WEIGHT].value
    if name not in ckpt:
        if cfg.get("tie_word_embeddings", True) is False:
            raise UnsupportedModel(f"{ckpt.where}: untied MLM decoder but no {name!r} in the checkpoint")
        return True
    value = ckpt.take(name)
    if cfg.get("tie_word_embeddings", True) and value.shape == word.shape and np.array_equal(value, word):
        return True  # older checkpoints store the tied copy
    dst = names.MLM_DECODER.prefix() + names.WEIGHT
    spec.add_slots({dst: Slot(tuple(value.shape), names.MLM_DECODER, names.WEIGHT)})
    spec[dst] = value
    return False


def _id2label(cfg: dict, n: int) -> dict[str, str]:
    raw = cfg.get("id2label") or {}
    labels = {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
    if labels and set(labels) != {str(i) for i in range(n)}:
        raise UnsupportedModel(f"config id2label has keys {sorted(labels)}, expected 0..{n - 1}")
    return labels or {str(i): f"LABEL_{i}" for i in range(n)}
