"""Loader for Hugging Face BERT encoders: fills a ModelSpec, nothing more."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgebert.errors import UnsupportedModel

from . import source
from .registry import register_loader
from .spec import BertConfig, ModelSpec

# Source name -> standard name (docs/format.md). Data, not code.
EMBEDDING_NAMES = {
    "embeddings.word_embeddings.weight": "token_embd.weight",
    "embeddings.position_embeddings.weight": "position_embd.weight",
    "embeddings.token_type_embeddings.weight": "token_type_embd.weight",
    "embeddings.LayerNorm.weight": "embd_norm.weight",
    "embeddings.LayerNorm.bias": "embd_norm.bias",
}
LAYER_NAMES = {
    "attention.output.dense": "attn_output",
    "attention.output.LayerNorm": "attn_norm",
    "intermediate.dense": "ffn_up",
    "output.dense": "ffn_down",
    "output.LayerNorm": "ffn_norm",
}
QKV_PARTS = ("attention.self.query", "attention.self.key", "attention.self.value")
PREFIXES = ("", "bert.")  # BertModel saves bare names; task models prefix "bert."
# Names a BertModel checkpoint may hold that the encoder does not use.
IGNORED_SUFFIXES = ("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias")


def read_config(cfg: dict) -> BertConfig:
    if cfg.get("position_embedding_type", "absolute") != "absolute":
        raise UnsupportedModel(f"position_embedding_type {cfg['position_embedding_type']!r} is not "
                               "supported; supported: absolute")
    try:
        return BertConfig(
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
    for src, dst in EMBEDDING_NAMES.items():
        spec[dst] = ckpt.take(prefix + src)
    for i in range(spec.config.num_layers):
        layer = f"{prefix}encoder.layer.{i}."
        for kind in ("weight", "bias"):
            spec[f"blk.{i}.attn_qkv.{kind}"] = np.concatenate([ckpt.take(f"{layer}{p}.{kind}") for p in QKV_PARTS])
            for src, dst in LAYER_NAMES.items():
                spec[f"blk.{i}.{dst}.{kind}"] = ckpt.take(f"{layer}{src}.{kind}")


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


def _max_length(folder: Path, config: BertConfig, st: dict | None) -> int:
    """Truncation length as sentence-transformers uses it, capped by the position table."""
    limit = None
    if st and st["max_length"]:
        limit = int(st["max_length"])
    elif (folder / "tokenizer_config.json").is_file():
        value = source.read_json(folder / "tokenizer_config.json").get("model_max_length")
        if isinstance(value, int) and value > 0:
            limit = value
    return min(limit or config.max_position_embeddings, config.max_position_embeddings)
