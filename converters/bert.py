"""Loader for Hugging Face BERT encoders: fills a ModelSpec, nothing more."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgebert import names
from edgebert.errors import UnsupportedModel

from . import source
from .registry import register_loader
from .spec import EncoderConfig, ModelSpec

# Source name -> standard role (edgebert/names.py). Data, not code.
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
PREFIXES = ("", "bert.")  # BertModel saves bare names; task models prefix "bert."
# Names a BertModel checkpoint may hold that the encoder does not use.
IGNORED_SUFFIXES = ("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias")


def read_config(cfg: dict) -> EncoderConfig:
    if cfg.get("position_embedding_type", "absolute") != "absolute":
        raise UnsupportedModel(f"position_embedding_type {cfg['position_embedding_type']!r} is not "
                               "supported; supported: absolute")
    try:
        return EncoderConfig(
            vocab_size=cfg["vocab_size"], hidden_size=cfg["hidden_size"],
            num_layers=cfg["num_hidden_layers"], num_heads=cfg["num_attention_heads"],
            intermediate_size=cfg["intermediate_size"],
            max_position_embeddings=cfg["max_position_embeddings"],
            type_vocab_size=cfg.get("type_vocab_size", 2),
            layer_norm_eps=float(cfg.get("layer_norm_eps", 1e-12)), hidden_act=cfg.get("hidden_act", "gelu"))
    except KeyError as e:
        raise UnsupportedModel(f"config.json lacks {e.args[0]!r}") from None


class Checkpoint:
    """Source tensors by name; remembers what was taken so leftovers can be refused."""

    def __init__(self, weights: dict[str, np.ndarray], where: Path):
        self.weights, self.where, self.used = weights, where, set()

    def __contains__(self, name: str) -> bool:
        return name in self.weights

    def take(self, name: str) -> np.ndarray:
        if name not in self.weights:
            raise UnsupportedModel(f"{self.where}: checkpoint lacks weight {name!r}")
        self.used.add(name)
        return self.weights[name]

    def refuse_unused(self, ignored_suffixes: tuple[str, ...] = ()) -> None:
        unused = [n for n in self.weights if n not in self.used and not n.endswith(ignored_suffixes)]
        if unused:
            raise UnsupportedModel(f"{self.where}: weights this converter does not understand: "
                                   f"{', '.join(sorted(unused)[:5])}{' ...' if len(unused) > 5 else ''}")


def fill_encoder(spec: ModelSpec, ckpt: Checkpoint, prefix: str) -> None:
    """Embeddings and every layer, from source names under ``prefix`` ("" or "bert.")."""
    for src, role in EMBEDDING_NAMES.items():
        for suffix in _suffixes(spec, role.prefix()):
            spec[role.prefix() + suffix] = ckpt.take(prefix + src + suffix)
    for i in range(spec.config.num_layers):
        layer = f"{prefix}encoder.layer.{i}."
        for suffix in (names.WEIGHT, names.BIAS):
            spec[names.ATTN_QKV.prefix(i) + suffix] = np.concatenate(
                [ckpt.take(f"{layer}{p}{suffix}") for p in QKV_PARTS])
            for src, role in LAYER_NAMES.items():
                spec[role.prefix(i) + suffix] = ckpt.take(layer + src + suffix)


def _suffixes(spec: ModelSpec, prefix: str) -> tuple[str, ...]:
    """The suffixes the spec declares for a layer prefix (embedding tables have no bias)."""
    return tuple(s for s in (names.WEIGHT, names.BIAS) if prefix + s in spec.slots)


def encoder_spec(model_dir: Path, cfg: dict, architecture: str, st: dict | None = None) -> ModelSpec:
    """An empty spec with config, tokenizer and truncation length read from ``model_dir``."""
    config = read_config(cfg)
    return ModelSpec(
        source_architecture=architecture, config=config,
        tokenizer_json=source.load_tokenizer_json(model_dir),
        max_length=_max_length(model_dir, config, st),
        pad_token_id=int(cfg.get("pad_token_id", 0) or 0),
        pooling=st["pooling"] if st else {"mode": "mean", "normalize": False})


@register_loader("BertModel")
def load_bert_model(folder: Path, cfg: dict, allow_pickle: bool = False) -> ModelSpec:
    st = source.sentence_transformers_settings(folder)
    model_dir = st["transformer_dir"] if st else folder
    if st and model_dir != folder:
        cfg = source.read_json(model_dir / "config.json")
    spec = encoder_spec(model_dir, cfg, "BertModel", st)
    weights = source.load_weights(model_dir, allow_pickle=allow_pickle)
    ckpt = Checkpoint(weights, model_dir)
    fill_encoder(spec, ckpt, _detect_prefix(weights))
    ckpt.refuse_unused(IGNORED_SUFFIXES)
    return spec


def _detect_prefix(weights: dict) -> str:
    for prefix in PREFIXES:
        if prefix + "embeddings.word_embeddings.weight" in weights:
            return prefix
    raise UnsupportedModel("checkpoint has no embeddings.word_embeddings.weight: not a BERT encoder")


def _max_length(folder: Path, config: EncoderConfig, st: dict | None) -> int:
    """Truncation length as sentence-transformers uses it, capped by the position table."""
    limit = None
    if st and st["max_length"]:
        limit = int(st["max_length"])
    elif (folder / "tokenizer_config.json").is_file():
        value = source.read_json(folder / "tokenizer_config.json").get("model_max_length")
        if isinstance(value, int) and value > 0:
            limit = value
    return min(limit or config.max_position_embeddings, config.max_position_embeddings)
