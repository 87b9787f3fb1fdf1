"""MPNet (transformers' ``mpnet``): RoBERTa-style positions, no token types, and one relative
position bias table that every layer adds to its attention scores (``relative_attention``).
Data, not code."""
from __future__ import annotations

from edgebert import names
from edgebert.errors import UnsupportedModel

from .bert import read_config as bert_config
from .family import Family, Head, part, register_family
from .spec import EncoderConfig, HeadGraph

PADDING_IDX = 1  # MPNetEmbeddings fixes padding_idx = 1, whatever pad_token_id says
# MPNetEncoder.compute_position_bias is called with its default num_buckets=32, whatever
# relative_attention_num_buckets says (that only sizes the table).
BUCKETS = 32


def read_config(cfg: dict) -> EncoderConfig:
    rows = cfg.get("relative_attention_num_buckets", BUCKETS)
    if rows != BUCKETS:
        raise UnsupportedModel(f"relative_attention_num_buckets {rows!r} is not supported: MPNet reads "
                               f"{BUCKETS} buckets of its table; supported: {BUCKETS}")
    return bert_config({**cfg, "type_vocab_size": 0}, position_offset=PADDING_IDX + 1, position_ids="real_tokens",
                       relative_buckets=BUCKETS)


MLM = {**part("lm_head.dense", names.MLM_TRANSFORM), **part("lm_head.layer_norm", names.MLM_NORM),
       # the decoder's bias is tied to lm_head.bias; either may be the one saved
       **part(("lm_head", "lm_head.decoder"), names.MLM_DECODER, (names.BIAS,))}

MPNET = register_family(Family(
    name="mpnet", base="mpnet", read_config=read_config,
    embeddings={"embeddings.word_embeddings": names.TOKEN_EMBD,
                "embeddings.position_embeddings": names.POSITION_EMBD,
                "embeddings.LayerNorm": names.EMBD_NORM,
                "encoder.relative_attention_bias": names.REL_BIAS},
    layer="encoder.layer.{i}.", qkv=("attention.attn.q", "attention.attn.k", "attention.attn.v"),
    layer_names={"attention.attn.o": names.ATTN_OUTPUT, "attention.LayerNorm": names.ATTN_NORM,
                 "intermediate.dense": names.FFN_UP, "output.dense": names.FFN_DOWN,
                 "output.LayerNorm": names.FFN_NORM},
    bare=("MPNetModel",),
    heads={
        # dense -> tanh -> out_proj on <s> (MPNetClassificationHead)
        "MPNetForSequenceClassification": Head(
            "sequence-classification", (part("classifier.dense", names.POOLER),
                                        part("classifier.out_proj", names.CLASSIFIER))),
        "MPNetForTokenClassification": Head("token-classification", (part("classifier", names.CLASSIFIER),)),
        "MPNetForQuestionAnswering": Head("question-answering", (part("qa_outputs", names.QA),)),
        "MPNetForMaskedLM": Head("masked-lm", (MLM,), decoder="lm_head.decoder.weight"),
    },
    head_graph=HeadGraph(pooled_activation="tanh", pooled_output=None, mlm_activation="gelu"),
    ignored=("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias")))
