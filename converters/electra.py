"""ELECTRA (transformers' ``electra``): BERT's layers behind embeddings of embedding_size projected to
hidden_size; the discriminator's replaced-token-detection head and a classification head with GELU.
Data, not code."""
from __future__ import annotations

from edgebert import names

from .bert import EMBEDDING_NAMES, LAYER_NAMES, QKV_PARTS
from .bert import read_config as bert_config
from .family import Family, Head, config_value, part, register_family
from .spec import EncoderConfig, HeadGraph


def read_config(cfg: dict) -> EncoderConfig:
    """ElectraModel projects only when embedding_size differs from hidden_size."""
    width = config_value(cfg, "embedding_size")
    return bert_config(cfg, embedding_size=None if width == cfg.get("hidden_size") else width)


CLASSIFIER = part("classifier", names.CLASSIFIER)

ELECTRA = register_family(Family(
    name="electra", base="electra", read_config=read_config,
    embeddings={**EMBEDDING_NAMES, "embeddings_project": names.EMBD_PROJ},
    layer="encoder.layer.{i}.", qkv=QKV_PARTS, layer_names=LAYER_NAMES, bare=("ElectraModel",),
    heads={
        # dense -> GELU -> out_proj on the first token
        "ElectraForSequenceClassification": Head(
            "sequence-classification", (part("classifier.dense", names.POOLER),
                                        part("classifier.out_proj", names.CLASSIFIER))),
        "ElectraForTokenClassification": Head("token-classification", (CLASSIFIER,)),
        "ElectraForQuestionAnswering": Head("question-answering", (part("qa_outputs", names.QA),)),
        # the discriminator: dense -> hidden_act -> one logit per token
        "ElectraForPreTraining": Head(
            "replaced-token-detection", (part("discriminator_predictions.dense", names.RTD_TRANSFORM),
                                         part("discriminator_predictions.dense_prediction", names.RTD))),
        # the generator: dense (H -> E) -> GELU -> LayerNorm(E) -> decoder tied to the E-wide word embeddings
        "ElectraForMaskedLM": Head(
            "masked-lm", ({**part("generator_predictions.dense", names.MLM_TRANSFORM),
                           **part("generator_predictions.LayerNorm", names.MLM_NORM),
                           **part("generator_lm_head", names.MLM_DECODER, (names.BIAS,))},),
            decoder="generator_lm_head.weight"),
    },
    head_graph=HeadGraph(pooled_activation="gelu", pooled_output=None, mlm_activation="gelu"),
    ignored=("embeddings.position_ids",)))
