"""DeBERTa-v2 and v3, mDeBERTa (transformers' ``deberta-v2``): disentangled attention over log-bucketed
relative positions (``disentangled_attention`` nodes), absolute positions in the input only with
``position_biased_input`` (v2), the relative table LayerNormed with ``norm_rel_ebd`` and projected by each
layer's own query and key weights with ``share_att_key`` (v3); DeBERTa-v2's convolution after layer 0
(``conv_kernel_size``: a ``neighbours`` node and a linear); the ContextPooler (dense + pooler_hidden_act
on token 0) before the classifier. Data, not code."""
from __future__ import annotations

from edgebert import names
from edgebert.errors import UnsupportedModel

from .family import Family, Head, config_value, part, register_family
from .spec import CONV_ACTIVATIONS, EncoderConfig, HeadGraph

# DebertaV2Config's defaults (save_pretrained writes only the keys that differ), plus the attributes
# transformers reads with getattr defaults
DEFAULTS = {"hidden_act": "gelu", "max_position_embeddings": 512, "type_vocab_size": 0, "layer_norm_eps": 1e-7,
            "relative_attention": False, "max_relative_positions": -1, "position_biased_input": True,
            "pos_att_type": None, "pooler_hidden_act": "gelu", "position_buckets": -1, "share_att_key": False,
            "norm_rel_ebd": "none", "conv_kernel_size": 0, "conv_act": "tanh", "conv_groups": 1}
POS_ATT_TYPES = ("c2p", "p2c")  # both, in any order: the one combination disentangled_attention computes
POOLER_ACTIVATIONS = ("gelu", "tanh", "relu")  # the linear op's, for pooler_hidden_act
NORM_REL = {"none": False, "layer_norm": True}


def _get(cfg: dict, key: str):
    return cfg[key] if cfg.get(key) is not None else DEFAULTS[key]


def _refuse(what: str, value, supported: str):
    raise UnsupportedModel(f"{what} {value!r} is not supported; supported: {supported}")


def read_config(cfg: dict) -> EncoderConfig:
    """The variants released DeBERTa-v2/v3 checkpoints use; anything else is refused, naming what is supported."""
    kinds = _get(cfg, "pos_att_type")
    kinds = [k.strip() for k in kinds.lower().split("|")] if isinstance(kinds, str) else kinds
    if not isinstance(kinds, list) or sorted(kinds) != sorted(POS_ATT_TYPES):
        _refuse("pos_att_type", cfg.get("pos_att_type"), '["p2c", "c2p"] (both)')
    if _get(cfg, "relative_attention") is not True:
        _refuse("relative_attention", cfg.get("relative_attention", False), "true")
    conv = _get(cfg, "conv_kernel_size")
    if not (isinstance(conv, int) and not isinstance(conv, bool) and conv >= 0 and (conv == 0 or conv % 2 == 1)):
        _refuse("conv_kernel_size", conv, "0 (no convolution layer) or an odd size (a same-padded Conv1d)")
    if conv and _get(cfg, "conv_groups") != 1:
        _refuse("conv_groups", cfg["conv_groups"], "1")
    if conv and _get(cfg, "conv_act") not in CONV_ACTIVATIONS:
        _refuse("conv_act", cfg["conv_act"], ", ".join(CONV_ACTIVATIONS))
    norm = str(_get(cfg, "norm_rel_ebd")).lower().replace(" ", "")
    if norm not in NORM_REL:
        _refuse("norm_rel_ebd", cfg["norm_rel_ebd"], ", ".join(NORM_REL))
    hidden, heads = config_value(cfg, "hidden_size"), config_value(cfg, "num_attention_heads")
    for key, want in (("embedding_size", hidden), ("pooler_hidden_size", hidden),
                      ("attention_head_size", hidden // heads if isinstance(hidden, int) and heads else None)):
        if cfg.get(key) is not None and cfg[key] != want:
            _refuse(key, cfg[key], f"{want} (hidden_size's)")
    if _get(cfg, "pooler_hidden_act") not in POOLER_ACTIVATIONS:
        _refuse("pooler_hidden_act", cfg["pooler_hidden_act"], ", ".join(POOLER_ACTIVATIONS))
    if cfg.get("legacy") is False and any(str(a).endswith("ForMaskedLM") for a in cfg.get("architectures") or ()):
        # transformers 4.57 ties that head's dense layer to the word embeddings and cannot run it
        _refuse("legacy", False, "true (the cls.predictions masked-LM head)")
    max_pos = config_value(cfg, "max_position_embeddings", DEFAULTS["max_position_embeddings"])
    max_rel = _get(cfg, "max_relative_positions")
    buckets = _get(cfg, "position_buckets")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (max_rel, buckets)):
        _refuse("max_relative_positions, position_buckets", (max_rel, buckets), "integers")
    share = _get(cfg, "share_att_key")
    if not isinstance(share, bool):
        _refuse("share_att_key", share, "true, false")
    return EncoderConfig(
        vocab_size=config_value(cfg, "vocab_size"), hidden_size=hidden,
        num_layers=config_value(cfg, "num_hidden_layers"), num_heads=heads,
        intermediate_size=config_value(cfg, "intermediate_size"), max_position_embeddings=max_pos,
        type_vocab_size=_get(cfg, "type_vocab_size"), layer_norm_eps=float(_get(cfg, "layer_norm_eps")),
        hidden_act=_get(cfg, "hidden_act"),
        position="absolute" if _get(cfg, "position_biased_input") else "relative",
        # transformers: max_relative_positions < 1 means max_position_embeddings; buckets <= 0 none
        max_relative_positions=max_rel if max_rel >= 1 else max_pos, position_buckets=max(buckets, 0),
        share_att_key=share, rel_norm=NORM_REL[norm],
        conv_kernel_size=conv, conv_act=_get(cfg, "conv_act") if conv else None)


def head_graph(cfg: dict) -> HeadGraph:
    """ContextPooler: dense + pooler_hidden_act on token 0, not a graph output; the MLM transform uses hidden_act."""
    return HeadGraph(pooled_activation=_get(cfg, "pooler_hidden_act"), pooled_output=None, mlm_activation=None)


# The (legacy, default) masked LM: dense, hidden_act, LayerNorm, then the word embeddings (tied) and a bias.
MLM = {**part("cls.predictions.transform.dense", names.MLM_TRANSFORM),
       **part("cls.predictions.transform.LayerNorm", names.MLM_NORM),
       **part(("cls.predictions", "cls.predictions.decoder"), names.MLM_DECODER, (names.BIAS,))}
CLASSIFIER = part("classifier", names.CLASSIFIER)

DEBERTA_V2 = register_family(Family(
    name="deberta-v2", base="deberta", read_config=read_config,
    embeddings={"embeddings.word_embeddings": names.TOKEN_EMBD,
                "embeddings.position_embeddings": names.POSITION_EMBD,
                "embeddings.token_type_embeddings": names.TOKEN_TYPE_EMBD,
                "embeddings.LayerNorm": names.EMBD_NORM,
                "encoder.rel_embeddings": names.REL_EMBD, "encoder.LayerNorm": names.REL_NORM,
                "encoder.conv.LayerNorm": names.CONV_NORM},
    layer="encoder.layer.{i}.",
    qkv=("attention.self.query_proj", "attention.self.key_proj", "attention.self.value_proj"),
    layer_names={"attention.output.dense": names.ATTN_OUTPUT, "attention.output.LayerNorm": names.ATTN_NORM,
                 "intermediate.dense": names.FFN_UP, "output.dense": names.FFN_DOWN,
                 "output.LayerNorm": names.FFN_NORM},
    stacked={names.ATTN_POS: ("attention.self.pos_query_proj", "attention.self.pos_key_proj")},
    conv1d={"encoder.conv.conv": names.CONV},
    bare=("DebertaV2Model",),
    heads={
        "DebertaV2ForSequenceClassification": Head("sequence-classification",
                                                   (part("pooler.dense", names.POOLER), CLASSIFIER)),
        "DebertaV2ForTokenClassification": Head("token-classification", (CLASSIFIER,)),
        "DebertaV2ForQuestionAnswering": Head("question-answering", (part("qa_outputs", names.QA),)),
        "DebertaV2ForMaskedLM": Head("masked-lm", (MLM,), decoder="cls.predictions.decoder.weight"),
    },
    head_graph=head_graph,
    # buffers; what transformers skips when it loads Microsoft's releases into these classes: a position
    # table they do not use (position_biased_input false) and the pre-training MLM head (lm_predictions)
    ignored=("embeddings.position_ids", "embeddings.position_embeddings.weight",
             *(f"lm_predictions.lm_head.{n}" for n in ("bias", "dense.weight", "dense.bias", "LayerNorm.weight",
                                                       "LayerNorm.bias")))))
