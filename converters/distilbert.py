"""DistilBERT (transformers' ``distilbert``): no token types, no pooler, its own heads. Data, not code."""
from __future__ import annotations

from edgebert import names

from .family import Family, Head, config_value, part, register_family
from .spec import EncoderConfig, HeadGraph

LAYER_NORM_EPS = 1e-12  # DistilBERT's LayerNorms are built with eps=1e-12; its config has no such key


def read_config(cfg: dict) -> EncoderConfig:
    return EncoderConfig(
        vocab_size=config_value(cfg, "vocab_size"), hidden_size=config_value(cfg, "dim"),
        num_layers=config_value(cfg, "n_layers"), num_heads=config_value(cfg, "n_heads"),
        intermediate_size=config_value(cfg, "hidden_dim"),
        max_position_embeddings=config_value(cfg, "max_position_embeddings"),
        type_vocab_size=0, layer_norm_eps=LAYER_NORM_EPS, hidden_act=cfg.get("activation", "gelu"))


CLASSIFIER = part("classifier", names.CLASSIFIER)
MLM = {**part("vocab_transform", names.MLM_TRANSFORM), **part("vocab_layer_norm", names.MLM_NORM),
       **part("vocab_projector", names.MLM_DECODER, (names.BIAS,))}

DISTILBERT = register_family(Family(
    name="distilbert", base="distilbert", read_config=read_config,
    embeddings={"embeddings.word_embeddings": names.TOKEN_EMBD,
                "embeddings.position_embeddings": names.POSITION_EMBD,
                "embeddings.LayerNorm": names.EMBD_NORM},
    layer="transformer.layer.{i}.", qkv=("attention.q_lin", "attention.k_lin", "attention.v_lin"),
    layer_names={"attention.out_lin": names.ATTN_OUTPUT, "sa_layer_norm": names.ATTN_NORM,
                 "ffn.lin1": names.FFN_UP, "ffn.lin2": names.FFN_DOWN, "output_layer_norm": names.FFN_NORM},
    bare=("DistilBertModel",),
    heads={
        # pre_classifier -> ReLU -> classifier on the first token
        "DistilBertForSequenceClassification": Head(
            "sequence-classification", (part("pre_classifier", names.POOLER), CLASSIFIER)),
        "DistilBertForTokenClassification": Head("token-classification", (CLASSIFIER,)),
        "DistilBertForQuestionAnswering": Head("question-answering", (part("qa_outputs", names.QA),)),
        "DistilBertForMaskedLM": Head("masked-lm", (MLM,), decoder="vocab_projector.weight"),
    },
    head_graph=HeadGraph(pooled_activation="relu", pooled_output=None, mlm_activation="gelu"),
    ignored=("embeddings.position_ids",)))
