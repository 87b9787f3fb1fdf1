"""Loaders for BERT task checkpoints: the shared encoder ("bert." prefix) plus a head.

Each head is a few named slots (docs/format.md) and an ``edgebert.head``
record (task, labels) that travels in the file; converters/graph.py turns the
record into graph nodes after the encoder.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

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
# Small final layers (a few output rows) stay float32: int8 saves almost no
# bytes there, and on the tiny test heads (max abs logit error, int8 encoder)
# int8 final layers doubled the error for token classification (0.147 vs
# 0.070) and QA (0.110 vs 0.041); pooled heads were equal (0.012 vs 0.014).
FINAL_KIND = "fp32"
# BERT's NSP head: row 0 = "B continues A", row 1 = "B is random" (transformers' docs).
NSP_LABELS = {"0": "is_next", "1": "not_next"}

# Source name -> (standard name, slot kind), per head part. Data, not code.
POOLER = {"bert.pooler.dense.weight": ("pooler.weight", "linear"), "bert.pooler.dense.bias": ("pooler.bias", "fp32")}
CLASSIFIER = {"classifier.weight": ("cls.weight", FINAL_KIND), "classifier.bias": ("cls.bias", "fp32")}
QA = {"qa_outputs.weight": ("qa.weight", FINAL_KIND), "qa_outputs.bias": ("qa.bias", "fp32")}
NSP = {"cls.seq_relationship.weight": ("nsp.weight", FINAL_KIND), "cls.seq_relationship.bias": ("nsp.bias", "fp32")}
MLM = {
    "cls.predictions.transform.dense.weight": ("mlm.transform.weight", "linear"),
    "cls.predictions.transform.dense.bias": ("mlm.transform.bias", "fp32"),
    "cls.predictions.transform.LayerNorm.weight": ("mlm.norm.weight", "fp32"),
    "cls.predictions.transform.LayerNorm.bias": ("mlm.norm.bias", "fp32"),
    "cls.predictions.bias": ("mlm.decoder.bias", "fp32"),
}
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
        spec.head.update(id2label=_id2label(cfg, spec.slots["cls.bias"].shape[0]),
                         problem_type=cfg.get("problem_type"))
    if task in ("next-sentence", "pretraining"):
        spec.head["id2label"] = dict(NSP_LABELS)
    if task in ("masked-lm", "pretraining"):
        spec.head["tied_decoder"] = _fill_decoder(spec, ckpt, cfg)
    ckpt.refuse_unused(IGNORED_SUFFIXES)
    return spec


def _fill_part(spec: ModelSpec, ckpt: Checkpoint, part: dict) -> None:
    for src, (dst, kind) in part.items():
        value = ckpt.take(src)
        spec.add_slots({dst: Slot(tuple(value.shape), kind)})
        spec[dst] = value
    H = spec.config.hidden_size
    for dst, _ in part.values():
        shape = spec.slots[dst].shape
        if dst.endswith(".weight") and not dst.startswith("mlm.norm") and shape[-1] != H:
            raise UnsupportedModel(f"head weight {dst} has shape {shape}; its input must be hidden_size {H}")


def _fill_decoder(spec: ModelSpec, ckpt: Checkpoint, cfg: dict) -> bool:
    """True when the MLM decoder reuses token_embd (tied, BERT's default); else an own slot."""
    name = "cls.predictions.decoder.weight"
    word = spec.slots["token_embd.weight"].value
    if name not in ckpt:
        if cfg.get("tie_word_embeddings", True) is False:
            raise UnsupportedModel(f"{ckpt.where}: untied MLM decoder but no {name!r} in the checkpoint")
        return True
    value = ckpt.take(name)
    if cfg.get("tie_word_embeddings", True) and value.shape == word.shape and np.array_equal(value, word):
        return True  # older checkpoints store the tied copy
    spec.add_slots({"mlm.decoder.weight": Slot(tuple(value.shape), "linear")})
    spec["mlm.decoder.weight"] = value
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
