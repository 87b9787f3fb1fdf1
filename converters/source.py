"""Reading a Hugging Face model folder: config, weights, tokenizer, sentence-transformers modules.

Every path taken from a file inside the folder must resolve inside the folder
(symlinks allowed, as Hugging Face's cache uses them, as long as the resolved
target stays inside). Pickle checkpoints load only with ``allow_pickle=True``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgebert.errors import UnsupportedModel

MAX_JSON_BYTES = 50_000_000  # tokenizer.json of large vocabularies is a few MB


def inside(folder: Path, relative: str) -> Path:
    """``folder / relative``, refused when it resolves outside ``folder``."""
    if Path(relative).is_absolute():
        raise UnsupportedModel(f"{folder}: absolute path {relative!r} in a model file is not allowed")
    root = folder.resolve()
    target = (folder / relative).resolve()
    if target != root and root not in target.parents:
        raise UnsupportedModel(f"{folder}: path {relative!r} escapes the model folder")
    return target


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise UnsupportedModel(f"missing file: {path}")
    if path.stat().st_size > MAX_JSON_BYTES:
        raise UnsupportedModel(f"{path}: {path.stat().st_size} bytes is too large for a JSON config")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UnsupportedModel(f"{path}: not valid UTF-8 JSON ({e})") from None
    if not isinstance(data, dict):
        raise UnsupportedModel(f"{path}: expected a JSON object")
    return data


def load_weights(folder: Path, allow_pickle: bool = False) -> dict[str, np.ndarray]:
    """All tensors of a checkpoint as float32 numpy arrays, by source name."""
    single = folder / "model.safetensors"
    index = folder / "model.safetensors.index.json"
    if single.is_file():
        return _read_safetensors(single)
    if index.is_file():
        shards = sorted(set(read_json(index).get("weight_map", {}).values()))
        if not shards:
            raise UnsupportedModel(f"{index}: empty weight_map")
        weights: dict[str, np.ndarray] = {}
        for shard in shards:
            weights.update(_read_safetensors(inside(folder, shard)))
        return weights
    pickle_file = folder / "pytorch_model.bin"
    if pickle_file.is_file():
        if not allow_pickle:
            raise UnsupportedModel(
                f"{pickle_file} is a pickle file, which can run arbitrary code when loaded; "
                "convert it only if you trust its source, with --allow-pickle (allow_pickle=True)")
        return _read_pickle(pickle_file)
    raise UnsupportedModel(
        f"{folder}: no weights found (looked for model.safetensors, model.safetensors.index.json, "
        "pytorch_model.bin)")


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    try:
        from safetensors import safe_open
    except ImportError:
        raise UnsupportedModel("converting needs the safetensors package, a dependency of edgebert: "
                               "pip install safetensors") from None
    out = {}
    try:
        with safe_open(str(path), framework="np") as f:
            for name in f.keys():
                out[name] = f.get_tensor(name).astype(np.float32)
    except Exception as e:  # safetensors raises its own error types
        raise UnsupportedModel(f"{path}: cannot read safetensors weights ({e})") from None
    return out


def _read_pickle(path: Path) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise UnsupportedModel("reading pytorch_model.bin needs torch: pip install 'edgebert[convert-pickle]'") from None
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    return {k: v.detach().float().numpy() for k, v in state.items() if hasattr(v, "detach")}


def load_tokenizer_json(folder: Path) -> str:
    """tokenizer.json content; built from vocab.txt (WordPiece) when only that exists."""
    path = folder / "tokenizer.json"
    if path.is_file():
        text = path.read_text(encoding="utf-8")
        from tokenizers import Tokenizer
        try:
            Tokenizer.from_str(text)
        except Exception as e:
            raise UnsupportedModel(f"{path}: the tokenizers library cannot load it ({e})") from None
        return text
    vocab = folder / "vocab.txt"
    if vocab.is_file():
        from tokenizers import BertWordPieceTokenizer
        cfg = read_json(folder / "tokenizer_config.json") if (folder / "tokenizer_config.json").is_file() else {}
        tok = BertWordPieceTokenizer(str(vocab), lowercase=bool(cfg.get("do_lower_case", True)))
        return tok._tokenizer.to_str()
    spm = next((folder / n for n in SENTENCEPIECE_FILES if (folder / n).is_file()), None)
    if spm is not None:
        return _from_sentencepiece(folder, spm)
    raise UnsupportedModel(f"{folder}: no tokenizer.json, vocab.txt or SentencePiece model "
                           f"({', '.join(SENTENCEPIECE_FILES)})")


# SentencePiece models as transformers' slow tokenizers name them: DeBERTa-v2/v3, XLM-R/CamemBERT, ALBERT/T5
SENTENCEPIECE_FILES = ("spm.model", "sentencepiece.bpe.model", "spiece.model")


def _from_sentencepiece(folder: Path, spm: Path) -> str:
    """tokenizer.json from a SentencePiece-only folder: transformers' slow tokenizer (the folder's
    tokenizer_config.json) converted to its fast form, at conversion time only."""
    try:
        import sentencepiece  # noqa: F401  (the slow tokenizer reads spm.model with it)
        from transformers import AutoTokenizer
    except ImportError as e:
        raise UnsupportedModel(
            f"{folder}: has only a SentencePiece model ({spm.name}), no tokenizer.json; converting it needs "
            f"transformers and sentencepiece (pip install transformers sentencepiece; missing: {e.name}), "
            "or put the model's tokenizer.json in the folder") from None
    try:
        tok = AutoTokenizer.from_pretrained(str(folder), use_fast=True)
    except (OSError, ValueError, TypeError) as e:
        raise UnsupportedModel(f"{folder}: transformers cannot build a fast tokenizer from {spm.name} ({e})") from None
    if not getattr(tok, "is_fast", False):
        raise UnsupportedModel(f"{folder}: transformers has no fast form of {type(tok).__name__}; "
                               "put the model's tokenizer.json in the folder")
    return tok.backend_tokenizer.to_str()


def sentence_transformers_settings(folder: Path) -> dict | None:
    """Pooling, normalisation, max length and transformer subfolder from modules.json, if present."""
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return None
    try:
        modules = json.loads(modules_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UnsupportedModel(f"{modules_file}: not valid JSON ({e})") from None
    if not isinstance(modules, list):
        raise UnsupportedModel(f"{modules_file}: expected a list of modules")
    settings = {"transformer_dir": folder, "pooling": {"mode": "mean", "normalize": False}, "max_length": None}
    for m in modules:
        kind = str(m.get("type", "")).rsplit(".", 1)[-1]
        path = inside(folder, str(m.get("path", "")))
        if kind == "Transformer":
            settings["transformer_dir"] = path
            bert_cfg = path / "sentence_bert_config.json"
            if bert_cfg.is_file():
                settings["max_length"] = read_json(bert_cfg).get("max_seq_length")
        elif kind == "Pooling":
            settings["pooling"]["mode"] = _pooling_mode(read_json(path / "config.json"), path)
        elif kind == "Normalize":
            settings["pooling"]["normalize"] = True
        else:
            raise UnsupportedModel(
                f"{modules_file}: sentence-transformers module {kind!r} is not supported; "
                "supported: Transformer, Pooling, Normalize")
    return settings


def _pooling_mode(cfg: dict, where: Path) -> str:
    modes = [m for m, key in (("mean", "pooling_mode_mean_tokens"), ("cls", "pooling_mode_cls_token"),
                              ("max", "pooling_mode_max_tokens")) if cfg.get(key)]
    other = [k for k, v in cfg.items() if k.startswith("pooling_mode_") and v and
             k not in ("pooling_mode_mean_tokens", "pooling_mode_cls_token", "pooling_mode_max_tokens")]
    if other or len(modes) != 1:
        raise UnsupportedModel(f"{where}: pooling {other or modes} is not supported; supported: exactly one "
                               "of mean, cls, max")
    return modes[0]
