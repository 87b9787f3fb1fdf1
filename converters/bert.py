"""BERT (transformers' ``bert``): its name map, config reader and heads. Data, not code."""
from __future__ import annotations

from edgebert import names
from edgebert.errors import UnsupportedModel

from .family import Family, Head, config_value, part, register_family
from .spec import EncoderConfig

EMBEDDING_NAMES = {
    "embeddings.word_embeddings": names.TOKEN_EMBD,
    "embeddings.position_embeddings": names.POSITION_EMBD,
    "embeddings.token_type_embeddings": names.TOKEN_TYPE_EMBD,
    "embeddings.LayerNorm": names.EMBD_NORM,
}
LAYER_NAMES = {
    "attention.output.dense": names.ATTN_OUTPUT,
    "attention.output.LayerNorm": names.ATTN_NORM,
    "intermediate.dense": names.FFN_UP,
    "output.dense": names.FFN_DOWN,
    "output.LayerNorm": names.FFN_NORM,
}
QKV_PARTS = ("attention.self.query", "attention.self.key", "attention.self.value")


def read_config(cfg: dict, **flags) -> EncoderConfig:
    """BertConfig's keys (RoBERTa and ELECTRA configs use the same), plus a family's flags."""
    if cfg.get("position_embedding_type", "absolute") != "absolute":
        raise UnsupportedModel(f"position_embedding_type {cfg['position_embedding_type']!r} is not "
                               "supported; supported: absolute")
    return EncoderConfig(
        vocab_size=config_value(cfg, "vocab_size"), hidden_size=config_value(cfg, "hidden_size"),
        num_layers=config_value(cfg, "num_hidden_layers"), num_heads=config_value(cfg, "num_attention_heads"),
        intermediate_size=config_value(cfg, "intermediate_size"),
        max_position_embeddings=config_value(cfg, "max_position_embeddings"),
        type_vocab_size=cfg.get("type_vocab_size", 2),
        layer_norm_eps=float(cfg.get("layer_norm_eps", 1e-12)), hidden_act=cfg.get("hidden_act", "gelu"), **flags)


POOLER = part("{base}pooler.dense", names.POOLER)
CLASSIFIER = part("classifier", names.CLASSIFIER)
QA = part("qa_outputs", names.QA)
NSP = part("cls.seq_relationship", names.NSP)
MLM = {**part("cls.predictions.transform.dense", names.MLM_TRANSFORM),
       **part("cls.predictions.transform.LayerNorm", names.MLM_NORM),
       # the decoder's bias is tied to cls.predictions.bias; either may be the one saved
       **part(("cls.predictions", "cls.predictions.decoder"), names.MLM_DECODER, (names.BIAS,))}
MLM_DECODER = "cls.predictions.decoder.weight"
# BERT's NSP head: row 0 = "B continues A", row 1 = "B is random" (transformers' docs).
NSP_LABELS = {"0": "is_next", "1": "not_next"}

BERT = register_family(Family(
    name="bert", base="bert", read_config=read_config, embeddings=EMBEDDING_NAMES, layer="encoder.layer.{i}.",
    qkv=QKV_PARTS, layer_names=LAYER_NAMES, bare=("BertModel",),
    heads={
        "BertForSequenceClassification": Head("sequence-classification", (POOLER, CLASSIFIER)),
        "BertForTokenClassification": Head("token-classification", (CLASSIFIER,)),
        "BertForQuestionAnswering": Head("question-answering", (QA,)),
        "BertForMaskedLM": Head("masked-lm", (MLM,), decoder=MLM_DECODER),
        "BertForNextSentencePrediction": Head("next-sentence", (POOLER, NSP), labels=NSP_LABELS),
        "BertForPreTraining": Head("pretraining", (POOLER, MLM, NSP), decoder=MLM_DECODER, labels=NSP_LABELS),
    },
    # buffers, and the pooler a bare encoder (or a head without one) does not use
    ignored=("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias")))
