"""One converter spec per architecture family: a name map plus a config reader (CTranslate2's loaders).

A ``Family`` is data: where the encoder's tensors live in a transformers
checkpoint (source name -> standard role, edgebert/names.py), how its
config.json reads into an ``EncoderConfig`` (whose flags say how its graph
differs from BERT's), and its task heads by source class. ``register_family``
makes every class it names findable in the registry; loading is the same
code for every family: read the config, fill the spec's slots from the
checkpoint, refuse leftovers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from edgebert import names
from edgebert.errors import UnsupportedModel

from . import source
from .checkpoint import Checkpoint
from .registry import register_loader
from .spec import BERT_HEADS, EncoderConfig, HeadGraph, ModelSpec

# A head part: source name (or tied alternatives, the first usual) -> (standard role, suffix).
# "{base}" in a source name is the encoder's prefix as found in the checkpoint ("bert." or "").
Part = dict


def part(source: str | tuple[str, ...], role: names.Role, suffixes=(names.WEIGHT, names.BIAS)) -> Part:
    """One layer's tensors: ``source + suffix`` -> (role, suffix); alternatives for tied copies."""
    alts = (source,) if isinstance(source, str) else source
    return {tuple(a + s for a in alts): (role, s) for s in suffixes}


@dataclass(frozen=True)
class Head:
    """A task head: its parts, the MLM decoder's weight name (absent from the file when tied) and
    fixed labels (NSP)."""

    task: str
    parts: tuple[Part, ...]
    decoder: str | None = None
    labels: dict | None = None


@dataclass(frozen=True)
class Family:
    name: str  # edgebert.architecture: informational, the graph says what runs
    base: str  # transformers' base_model_prefix: the encoder's prefix in task checkpoints
    read_config: Callable[[dict], EncoderConfig]
    embeddings: dict  # source name under the base -> role (.weight, and .bias where the slot has one)
    layer: str  # source prefix of layer i, "encoder.layer.{i}."
    qkv: tuple[str, str, str]  # query, key, value projections under the layer prefix
    layer_names: dict  # source name under the layer prefix -> role
    bare: tuple[str, ...]  # source classes of the bare encoder ("BertModel")
    heads: dict = field(default_factory=dict)  # source class -> Head
    head_graph: HeadGraph = BERT_HEADS
    ignored: tuple[str, ...] = ()  # suffixes a checkpoint may hold that no slot uses (buffers, poolers)
    # config -> True when its layers were built without biases (ModernBERT): a missing ``.bias`` reads as
    # zeros, since the file's linear and norm ops always add one
    biasless: Callable[[dict], bool] | None = None
    # role -> source names under the layer prefix whose tensors stack along rows into it, where the spec has
    # the role's slot (DeBERTa-v2's position query and key projections into attn_pos)
    stacked: dict = field(default_factory=dict)
    # source name under the base -> role of a Conv1d (weight (N, C, k)) stored as a linear over k neighbouring
    # rows side by side, (N, k C), where the spec has the role's slot (DeBERTa-v2's conv layer)
    conv1d: dict = field(default_factory=dict)

    @property
    def architectures(self) -> tuple[str, ...]:
        return (*self.bare, *self.heads)


def register_family(family: Family) -> Family:
    for arch in family.architectures:
        register_loader(arch)(_loader(family, arch))
    return family


def _loader(family: Family, architecture: str):
    def load(folder: Path, cfg: dict, allow_pickle: bool = False) -> ModelSpec:
        return load_model(family, architecture, folder, cfg, allow_pickle=allow_pickle)
    load.__name__ = f"load_{architecture}"
    return load


def load_model(family: Family, architecture: str, folder: Path, cfg: dict, allow_pickle: bool = False) -> ModelSpec:
    """A bare encoder (sentence-transformers folders too) or a task model of ``family``."""
    from .heads import fill_head

    # A sentence-transformers folder (modules.json) is loaded as sentence-transformers does, with
    # AutoModel: the bare encoder, whatever config.json's architectures say (all-mpnet-base-v2 says
    # MPNetForMaskedLM but holds no lm_head).
    st = source.sentence_transformers_settings(folder)
    head = None if st else family.heads.get(architecture)
    model_dir = st["transformer_dir"] if st else folder
    if st and model_dir != folder:
        cfg = source.read_json(model_dir / "config.json")
    spec = encoder_spec(model_dir, family.read_config(cfg), architecture, cfg, st)
    # a family's head graph may depend on the config (ModernBERT's classifier_pooling, classifier_activation)
    style = family.head_graph(cfg) if callable(family.head_graph) else family.head_graph
    spec.head_graph, spec.architecture = style, family.name
    ckpt = Checkpoint(source.load_weights(model_dir, allow_pickle=allow_pickle), model_dir)
    ckpt.zero_biases = bool(family.biasless and family.biasless(cfg))
    prefix = ckpt.base_prefix(_probe(family), tuple(dict.fromkeys(("", f"{family.base}.", "model."))))
    fill_encoder(family, spec, ckpt, prefix)
    if head is not None:
        fill_head(spec, ckpt, cfg, head, prefix)
    ckpt.refuse_unused(family.ignored)
    return spec


def _probe(family: Family) -> str:
    """The word embeddings' source name: present in every checkpoint of the family."""
    word = next(src for src, role in family.embeddings.items() if role is names.TOKEN_EMBD)
    return word + names.WEIGHT


def fill_encoder(family: Family, spec: ModelSpec, ckpt: Checkpoint, prefix: str) -> None:
    """Embeddings and every layer, from source names under ``prefix``."""
    for src, role in family.embeddings.items():
        for suffix in _suffixes(spec, role.prefix()):
            spec[role.prefix() + suffix] = ckpt.take(prefix + src + suffix)
    for src, role in family.conv1d.items():
        if role.prefix() + names.WEIGHT in spec.slots:
            w = ckpt.take(prefix + src + names.WEIGHT)
            if w.ndim != 3:
                raise UnsupportedModel(f"{prefix + src + names.WEIGHT}: a Conv1d weight is (out, in, k), got {w.shape}")
            # out[t, o] = sum over j, c of w[o, c, j] x[t + j - k//2, c]: column j C + c of the linear
            spec[role.prefix() + names.WEIGHT] = w.transpose(0, 2, 1).reshape(w.shape[0], -1)
            spec[role.prefix() + names.BIAS] = ckpt.take(prefix + src + names.BIAS)
    for i in range(spec.config.stored_layers):  # one when the layers share their weights (ALBERT)
        layer = prefix + family.layer.format(i=i)
        for suffix in (names.WEIGHT, names.BIAS):
            spec[names.ATTN_QKV.prefix(i) + suffix] = np.concatenate(
                [ckpt.take(f"{layer}{p}{suffix}") for p in family.qkv])
            for src, role in family.layer_names.items():
                if role.prefix(i) + suffix in spec.slots:  # pre-norm layer 0 has no attention norm
                    spec[role.prefix(i) + suffix] = ckpt.take(layer + src + suffix)
            for role, sources in family.stacked.items():
                if role.prefix(i) + suffix in spec.slots:
                    spec[role.prefix(i) + suffix] = np.concatenate([ckpt.take(layer + p + suffix) for p in sources])


def _suffixes(spec: ModelSpec, prefix: str) -> tuple[str, ...]:
    """The suffixes the spec declares for a layer prefix (embedding tables have no bias; a table
    the config does not have, e.g. token types of DistilBERT, has none)."""
    return tuple(s for s in (names.WEIGHT, names.BIAS) if prefix + s in spec.slots)


def config_value(cfg: dict, key: str, default=None):
    """``cfg[key]``, or ``default`` when given; a missing required key is a clear refusal."""
    if key in cfg:
        return cfg[key]
    if default is None:
        raise UnsupportedModel(f"config.json lacks {key!r}")
    return default


def encoder_spec(model_dir: Path, config: EncoderConfig, architecture: str, cfg: dict,
                 st: dict | None = None) -> ModelSpec:
    """An empty spec with config, tokenizer and truncation length read from ``model_dir``."""
    return ModelSpec(
        source_architecture=architecture, config=config,
        tokenizer_json=source.load_tokenizer_json(model_dir),
        max_length=_max_length(model_dir, config, st),
        pad_token_id=int(cfg.get("pad_token_id", 0) or 0),
        pooling=st["pooling"] if st else {"mode": "mean", "normalize": False})


def _max_length(folder: Path, config: EncoderConfig, st: dict | None) -> int:
    """Truncation length as sentence-transformers uses it, capped by the usable positions."""
    limit = None
    if st and st["max_length"]:
        limit = int(st["max_length"])
    elif (folder / "tokenizer_config.json").is_file():
        value = source.read_json(folder / "tokenizer_config.json").get("model_max_length")
        if isinstance(value, int) and value > 0:
            limit = value
    return min(limit or config.max_positions, config.max_positions)
