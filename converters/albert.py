"""ALBERT (transformers' ``albert``): embeddings of embedding_size always projected to hidden_size,
one set of layer weights shared by every layer (stored once as blk.0, read by each layer's nodes:
``shared_layers``), the tanh GELU (``gelu_new``), and the sentence-order prediction head. Data, not code."""
from __future__ import annotations

from edgebert import names
from edgebert.errors import UnsupportedModel

from .bert import EMBEDDING_NAMES
from .bert import read_config as bert_config
from .family import Family, Head, config_value, part, register_family
from .spec import EncoderConfig, HeadGraph

# transformers' activation names -> the linear op's (ACT2FN: gelu_new and gelu_pytorch_tanh are the tanh form)
ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh"}
# AlbertForPreTraining's sop_classifier: 0 = the two segments in their original order, 1 = swapped
SOP_LABELS = {"0": "in_order", "1": "swapped"}


def read_config(cfg: dict) -> EncoderConfig:
    for key in ("num_hidden_groups", "inner_group_num"):
        if cfg.get(key, 1) != 1:
            raise UnsupportedModel(f"{key} {cfg[key]!r} is not supported; supported: 1 (one shared layer)")
    act = cfg.get("hidden_act", "gelu_new")
    if act not in ACTIVATIONS:
        raise UnsupportedModel(f"hidden_act {act!r} is not supported; supported: {', '.join(ACTIVATIONS)}")
    # AlbertTransformer always applies embedding_hidden_mapping_in, even when the widths agree
    return bert_config({**cfg, "hidden_act": ACTIVATIONS[act]}, embedding_size=config_value(cfg, "embedding_size"),
                       shared_layers=True)


POOLER = part("{base}pooler", names.POOLER)
CLASSIFIER = part("classifier", names.CLASSIFIER)
# predictions: dense (H -> E) -> hidden_act -> LayerNorm(E) -> decoder tied to the E-wide word embeddings
MLM = {**part("predictions.dense", names.MLM_TRANSFORM), **part("predictions.LayerNorm", names.MLM_NORM),
       # the decoder's bias is tied to predictions.bias; either may be the one saved
       **part(("predictions", "predictions.decoder"), names.MLM_DECODER, (names.BIAS,))}
MLM_DECODER = "predictions.decoder.weight"

ALBERT = register_family(Family(
    name="albert", base="albert", read_config=read_config,
    embeddings={**EMBEDDING_NAMES, "encoder.embedding_hidden_mapping_in": names.EMBD_PROJ},
    layer="encoder.albert_layer_groups.0.albert_layers.0.",
    qkv=("attention.query", "attention.key", "attention.value"),
    layer_names={"attention.dense": names.ATTN_OUTPUT, "attention.LayerNorm": names.ATTN_NORM,
                 "ffn": names.FFN_UP, "ffn_output": names.FFN_DOWN, "full_layer_layer_norm": names.FFN_NORM},
    bare=("AlbertModel",),
    heads={
        "AlbertForSequenceClassification": Head("sequence-classification", (POOLER, CLASSIFIER)),
        "AlbertForTokenClassification": Head("token-classification", (CLASSIFIER,)),
        "AlbertForQuestionAnswering": Head("question-answering", (part("qa_outputs", names.QA),)),
        "AlbertForMaskedLM": Head("masked-lm", (MLM,), decoder=MLM_DECODER),
        # masked LM plus sentence-order prediction on the pooled <cls> (the pretraining task's nsp slot)
        "AlbertForPreTraining": Head("pretraining", (POOLER, MLM, part("sop_classifier.classifier", names.NSP)),
                                     decoder=MLM_DECODER, labels=SOP_LABELS),
    },
    head_graph=HeadGraph(pooled_activation="tanh", pooled_output="pooler_output", mlm_activation=None),
    ignored=("embeddings.position_ids", "pooler.weight", "pooler.bias")))
