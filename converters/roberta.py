"""RoBERTa, XLM-RoBERTa and CamemBERT (transformers' ``roberta`` layout): BERT's names, positions
that start after padding_idx and count only real tokens, one token type, a classification head
on ``<s>`` (dense, tanh, out_proj). Data, not code."""
from __future__ import annotations

from edgebert import names

from .bert import EMBEDDING_NAMES, LAYER_NAMES, QKV_PARTS
from .bert import read_config as bert_config
from .family import Family, Head, part, register_family
from .spec import EncoderConfig, HeadGraph

PADDING_IDX = 1  # RobertaConfig's default pad_token_id


def read_config(cfg: dict) -> EncoderConfig:
    """Position k (0-based) of a sequence's real tokens reads row padding_idx + 1 + k
    (transformers' create_position_ids_from_input_ids)."""
    pad = cfg.get("pad_token_id", PADDING_IDX)
    return bert_config(cfg, position_offset=(PADDING_IDX if pad is None else pad) + 1, position_ids="real_tokens")


CLASSIFIER = part("classifier", names.CLASSIFIER)
MLM = {**part("lm_head.dense", names.MLM_TRANSFORM), **part("lm_head.layer_norm", names.MLM_NORM),
       # the decoder's bias is tied to lm_head.bias; either may be the one saved
       **part(("lm_head", "lm_head.decoder"), names.MLM_DECODER, (names.BIAS,))}


def _family(name: str, prefix: str) -> Family:
    """One of the RoBERTa layouts; ``prefix`` of its source classes (RobertaModel, XLMRobertaModel...)."""
    return register_family(Family(
        name=name, base="roberta", read_config=read_config, embeddings=EMBEDDING_NAMES,
        layer="encoder.layer.{i}.", qkv=QKV_PARTS, layer_names=LAYER_NAMES, bare=(f"{prefix}Model",),
        heads={
            f"{prefix}ForSequenceClassification": Head(
                "sequence-classification", (part("classifier.dense", names.POOLER),
                                            part("classifier.out_proj", names.CLASSIFIER))),
            f"{prefix}ForTokenClassification": Head("token-classification", (CLASSIFIER,)),
            f"{prefix}ForQuestionAnswering": Head("question-answering", (part("qa_outputs", names.QA),)),
            f"{prefix}ForMaskedLM": Head("masked-lm", (MLM,), decoder="lm_head.decoder.weight"),
        },
        head_graph=HeadGraph(pooled_activation="tanh", pooled_output=None, mlm_activation="gelu"),
        ignored=("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias")))


ROBERTA = _family("roberta", "Roberta")
XLM_ROBERTA = _family("xlm-roberta", "XLMRoberta")
CAMEMBERT = _family("camembert", "Camembert")
