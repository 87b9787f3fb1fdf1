"""The base of every engine and the peers' shared text path (``Padded``); see benchmarks/engines.py."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

BATCH = 32


class Engine:
    label = file = file_note = None

    def describe(self) -> dict:
        out = {"label": self.label, "file": self.file, "file_bytes": Path(self.file).stat().st_size,
               "settings": self.settings()}
        if self.file_note:
            out["file_note"] = self.file_note
        return out

    def settings(self) -> dict:
        raise NotImplementedError


class Padded(Engine):
    """Text path shared by the peers; subclasses give ``run`` on int64 numpy arrays."""

    def _init_text(self, model_dir: str, max_length: int | None = None):
        """The folder's tokenizer.json, truncating at ``max_length`` (default: sentence-transformers' max_seq_length)."""
        from tokenizers import Tokenizer

        folder = Path(model_dir)
        if max_length is None:
            max_length = json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"]
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length)

    def embed(self, texts):
        encodings = self.tokenizer.encode_batch(list(texts))
        order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
        out = np.empty((len(encodings), 0), dtype=np.float32)
        for start in range(0, len(order), BATCH):
            batch = [encodings[i] for i in order[start:start + BATCH]]
            width = max(len(e.ids) for e in batch)
            ids = np.zeros((len(batch), width), dtype=np.int64)
            types = np.zeros_like(ids)
            mask = np.zeros_like(ids)
            for row, e in enumerate(batch):
                ids[row, :len(e.ids)] = e.ids
                types[row, :len(e.ids)] = e.type_ids
                mask[row, :len(e.ids)] = 1
            hidden = np.asarray(self.run(ids, mask, types), dtype=np.float32)
            pooled = mean_pool_normalize(hidden, mask)
            if out.shape[1] == 0:
                out = np.empty((len(encodings), pooled.shape[1]), dtype=np.float32)
            out[order[start:start + BATCH]] = pooled
        return out


def mean_pool_normalize(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = mask[:, :, None].astype(np.float32)
    v = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
