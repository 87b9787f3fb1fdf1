"""ModernBERT (transformers' ``modernbert``): rotary positions (a base for global layers and one for local
layers), GeGLU, pre-norm layers, usually without biases, every n-th layer global and the others within a
sliding window, a final norm; its prediction head (dense, activation, norm) before every task layer, and
cls or mean pooling for sequence classification. Data, not code."""
from __future__ import annotations

from edgebert import names
from edgebert.errors import UnsupportedModel

from .family import Family, Head, config_value, part, register_family
from .spec import EncoderConfig, HeadGraph

BIAS_KEYS = ("attention_bias", "mlp_bias", "norm_bias", "classifier_bias")  # ModernBertConfig: all False
HEAD_ACTIVATIONS = ("gelu", "tanh", "relu")  # the linear op's, for classifier_activation
DEFAULTS = {"global_rope_theta": 160000.0, "local_attention": 128, "global_attn_every_n_layers": 3,
            "norm_eps": 1e-5, "hidden_activation": "gelu", "classifier_pooling": "cls",
            "classifier_activation": "gelu"}  # ModernBertConfig's defaults, for keys a config.json omits


def _get(cfg: dict, key: str):
    return cfg.get(key, DEFAULTS[key]) if cfg.get(key) is not None else DEFAULTS[key]


def read_config(cfg: dict) -> EncoderConfig:
    """Layer i is global iff i % global_attn_every_n_layers == 0 (transformers' ModernBertAttention); the
    layout is stored normalised (n capped at num_layers; no local layers: all global)."""
    if cfg.get("rope_scaling"):
        raise UnsupportedModel(f"rope_scaling {cfg['rope_scaling']!r} is not supported; supported: none")
    layers, every = config_value(cfg, "num_hidden_layers"), _get(cfg, "global_attn_every_n_layers")
    if not isinstance(every, int) or isinstance(every, bool) or every < 1:
        raise UnsupportedModel(f"global_attn_every_n_layers must be a positive integer, got {every!r}")
    every = min(every, layers)
    theta = float(_get(cfg, "global_rope_theta"))
    local = every > 1
    return EncoderConfig(
        vocab_size=config_value(cfg, "vocab_size"), hidden_size=config_value(cfg, "hidden_size"),
        num_layers=layers, num_heads=config_value(cfg, "num_attention_heads"),
        intermediate_size=config_value(cfg, "intermediate_size"),
        max_position_embeddings=config_value(cfg, "max_position_embeddings"), type_vocab_size=0,
        layer_norm_eps=float(_get(cfg, "norm_eps")), hidden_act=_get(cfg, "hidden_activation"),
        norm_placement="pre", position="rotary", feed_forward="gated", rope_theta=theta,
        local_rope_theta=float(cfg.get("local_rope_theta") or theta) if local else None,
        local_window=_get(cfg, "local_attention") // 2 if local else None, global_every=every)


def head_graph(cfg: dict) -> HeadGraph:
    act, pooling = _get(cfg, "classifier_activation"), _get(cfg, "classifier_pooling")
    if act not in HEAD_ACTIVATIONS:
        raise UnsupportedModel(f"classifier_activation {act!r} is not supported; supported: "
                               f"{', '.join(HEAD_ACTIVATIONS)}")
    if pooling not in ("cls", "mean"):
        raise UnsupportedModel(f"classifier_pooling {pooling!r} is not supported; supported: cls, mean")
    return HeadGraph(pooled_activation=act, pooled_output=None, mlm_activation=act,
                     pooling={"cls": "first", "mean": "mean"}[pooling], head_norm=True)


def biasless(cfg: dict) -> bool:
    """No biases anywhere (the default): each missing one reads as zeros. A config with some biases and
    not others must have every one in its checkpoint."""
    return not any(cfg.get(key, False) for key in BIAS_KEYS)


HEAD = (part("head.dense", names.POOLER), part("head.norm", names.POOLER_NORM))

MODERNBERT = register_family(Family(
    name="modernbert", base="model", read_config=read_config,
    # encoder-level tensors under the base: the embeddings and the final norm after the last layer
    embeddings={"embeddings.tok_embeddings": names.TOKEN_EMBD, "embeddings.norm": names.EMBD_NORM,
                "final_norm": names.FINAL_NORM},
    layer="layers.{i}.", qkv=("attn.Wqkv",),
    layer_names={"attn_norm": names.ATTN_NORM, "attn.Wo": names.ATTN_OUTPUT, "mlp_norm": names.FFN_NORM,
                 "mlp.Wi": names.FFN_UP, "mlp.Wo": names.FFN_DOWN},
    bare=("ModernBertModel",),
    heads={
        "ModernBertForSequenceClassification": Head("sequence-classification",
                                                    (*HEAD, part("classifier", names.CLASSIFIER))),
        "ModernBertForTokenClassification": Head("token-classification", (*HEAD, part("classifier", names.CLASSIFIER))),
        "ModernBertForQuestionAnswering": Head("question-answering", (*HEAD, part("classifier", names.QA))),
        # head (dense, act, norm) -> decoder tied to the word embeddings, its own bias
        "ModernBertForMaskedLM": Head(
            "masked-lm", ({**part("head.dense", names.MLM_TRANSFORM), **part("head.norm", names.MLM_NORM),
                           **part("decoder", names.MLM_DECODER, (names.BIAS,))},), decoder="decoder.weight"),
    },
    head_graph=head_graph, biasless=biasless))
