"""Loaders for BERT task checkpoints: the shared encoder ("bert." prefix) plus a head.

Each head is a few named slots (docs/format.md) and an ``edgebert.head``
record (task, labels) that travels in the file; converters/graph.py turns the
record into graph nodes after the encoder.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgebert import names
from edgebert.errors import UnsupportedModel

from . import source
from .bert import Checkpoint, encoder_spec, fill_encoder
from .registry import register_loader
from .spec import ModelSpec, Slot

TASKS = {
    "BertForSequenceClassification": "sequence-classification",
    "BertForTokenClassification": "token-classification",
    "BertForQuestionAnswering": "question-answering",
    "BertForMaskedLM": "masked-lm",
    "BertForNextSentencePrediction": "next-sentence",
    "BertForPreTraining": "pretraining",
}
# BERT's NSP head: row 0 = "B continues A", row 1 = "B is random" (transformers' docs).
NSP_LABELS = {"0": "is_next", "1": "not_next"}


def _layer(source: str, role: names.Role) -> dict[str, tuple[names.Role, str]]:
    return {source + suffix: (role, suffix) for suffix in (names.WEIGHT, names.BIAS)}


# Source name -> (standard role, suffix), per head part. Data, not code. Which of
# them are quantized is the roles' trait (edgebert/names.py: small final layers stay float32).
POOLER = _layer("bert.pooler.dense", names.POOLER)
CLASSIFIER = _layer("classifier", names.CLASSIFIER)
QA = _layer("qa_outputs", names.QA)
NSP = _layer("cls.seq_relationship", names.NSP)
MLM = {**_layer("cls.predictions.transform.dense", names.MLM_TRANSFORM),
       **_layer("cls.predictions.transform.LayerNorm", names.MLM_NORM),
       "cls.predictions.bias": (names.MLM_DECODER, names.BIAS)}
PARTS = {
    "sequence-classification": (POOLER, CLASSIFIER),
    "token-classification": (CLASSIFIER,),
    "question-answering": (QA,),
    "masked-lm": (MLM,),
    "next-sentence": (POOLER, NSP),
    "pretraining": (POOLER, MLM, NSP),
}
# Names a task checkpoint may hold that no head uses (buffers, duplicates of tied weights).
IGNORED_SUFFIXES = ("embeddings.position_ids", "cls.predictions.decoder.bias")


def load_head_model(folder: Path, cfg: dict, architecture: str, allow_pickle: bool = False) -> ModelSpec:
    task = TASKS[architecture]
    spec = encoder_spec(folder, cfg, architecture)
    ckpt = Checkpoint(source.load_weights(folder, allow_pickle=allow_pickle), folder)
    fill_encoder(spec, ckpt, "bert.")
    spec.head = {"task": task}
    for part in PARTS[task]:
        _fill_part(spec, ckpt, part)
    if task in ("sequence-classification", "token-classification"):
        spec.head.update(id2label=_id2label(cfg, spec.slots[names.CLASSIFIER.prefix() + names.BIAS].shape[0]),
                         problem_type=cfg.get("problem_type"))
    if task in ("next-sentence", "pretraining"):
        spec.head["id2label"] = dict(NSP_LABELS)
    if task in ("masked-lm", "pretraining"):
        spec.head["tied_decoder"] = _fill_decoder(spec, ckpt, cfg)
    ckpt.refuse_unused(IGNORED_SUFFIXES)
    return spec


def _fill_part(spec: ModelSpec, ckpt: Checkpoint, part: dict) -> None:
    H = spec.config.hidden_size
    for src, (role, suffix) in part.items():
        value, dst = ckpt.take(src), role.prefix() + suffix
        spec.add_slots({dst: Slot(tuple(value.shape), role, suffix)})
        spec[dst] = value
        if suffix == names.WEIGHT and role.kind != "norm" and value.shape[-1] != H:
            raise UnsupportedModel(f"head weight {dst} has shape {tuple(value.shape)}; "
                                   f"its input must be hidden_size {H}")


def _fill_decoder(spec: ModelSpec, ckpt: Checkpoint, cfg: dict) -> bool:
    """True when the MLM decoder reuses token_embd (tied, BERT's default); else an own slot."""
    name = "cls.predictions.decoder.weight"
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


def _loader(architecture: str):
    def load(folder: Path, cfg: dict, allow_pickle: bool = False) -> ModelSpec:
        return load_head_model(folder, cfg, architecture, allow_pickle=allow_pickle)
    load.__name__ = f"load_{architecture}"
    return load


for _arch in TASKS:
    register_loader(_arch)(_loader(_arch))
