"""The engines compared, one small class each, with one interface.

    engine.run(ids, mask, types)  -> last hidden state (B, T, H): the model call alone
    engine.embed(texts)           -> (n, H) float32: tokenize + model + mean pool + normalize
    engine.describe()             -> label, model file, settings (for the report)

Every library is imported inside its class, so each engine's process (a
benchmark worker or a cold-start child) loads only its own. The peers share one text path (``Padded``): the model's
tokenizer.json through HF tokenizers (what edgebert uses too), truncation at
the model's max_seq_length, sorting by length, batches of 32 padded to their
longest text, mean pooling over the mask, L2 normalisation
(sentence-transformers' all-MiniLM-L6-v2 pipeline). edgebert uses its own ``embed``.
"""
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


class Edgebert(Engine):
    label = "edgebert int8"
    backend = "auto"  # the native library where `edgebert warmup` built one (prepare does), else the JIT

    def __init__(self, paths: dict, threads: int):
        import edgebert

        self.file = paths[getattr(self, "key", "edgebert")]
        self.model = edgebert.load(self.file, threads=threads, backend=self.backend)

    def run(self, ids, mask, types):
        return self.model.run(ids, mask, types)

    def embed(self, texts):
        return self.model.embed(texts, batch_size=BATCH)

    def settings(self) -> dict:
        return {"threads": "threads", "max_length": self.model.max_length, "backend": self.model.backend}


class EdgebertJit(Edgebert):
    """The same kernels through Numba's JIT: what the native library changes."""
    label = "edgebert int8, JIT kernels"
    backend = "numba"


class EdgebertPlain(Edgebert):
    """The plain int8 file (no SmoothQuant, no higher-precision layer): what calibration costs in speed."""
    label = "edgebert int8, no calibration"
    key = "edgebert_plain"


class Padded(Engine):
    """Text path shared by the peers; subclasses give ``run`` on int64 numpy arrays."""

    def _init_text(self, model_dir: str):
        from tokenizers import Tokenizer

        folder = Path(model_dir)
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


class OrtInt8(Padded):
    label = "ORT int8"
    key = "ort_int8"

    def __init__(self, paths: dict, threads: int):
        import onnxruntime as ort

        self._init_text(paths["model_dir"])
        self.file = paths[self.key]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        # session.intra_op.allow_spinning is left at ORT's default (on); the report says so.
        self.session = ort.InferenceSession(self.file, opts, providers=["CPUExecutionProvider"])

    def run(self, ids, mask, types):
        return self.session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})[0]

    def settings(self) -> dict:
        return {"intra_op_num_threads": "threads", "inter_op_num_threads": 1,
                "allow_spinning": "on (ORT default)", "graph_optimization_level": "ORT_ENABLE_ALL"}


class OrtFp32(OrtInt8):
    label = "ORT fp32"
    key = "ort_fp32"


class TorchFp32(Padded):
    label = "PyTorch fp32"

    def __init__(self, paths: dict, threads: int):
        import torch
        from transformers import AutoModel

        self._init_text(paths["model_dir"])
        self.torch = torch
        self.file = str(Path(paths["model_dir"]) / "model.safetensors")
        torch.set_num_threads(threads)
        self.model = self._prepare(AutoModel.from_pretrained(paths["model_dir"], local_files_only=True).eval())

    def _prepare(self, model):
        return model

    def run(self, ids, mask, types):
        torch = self.torch
        with torch.inference_mode():
            return self.model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                              token_type_ids=torch.from_numpy(types)).last_hidden_state.numpy()

    def settings(self) -> dict:
        return {"torch.set_num_threads": "threads",
                "attn_implementation": getattr(self.model.config, "_attn_implementation", None)}


class TorchDynamicInt8(TorchFp32):
    label = "PyTorch int8"
    file_note = "no file of its own: quantized at load from the fp32 safetensors"

    def _prepare(self, model):
        torch = self.torch
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


ENGINES = {"edgebert": Edgebert, "edgebert_jit": EdgebertJit, "edgebert_plain": EdgebertPlain, "ort_int8": OrtInt8, "ort_fp32": OrtFp32,
           "torch_fp32": TorchFp32, "torch_int8": TorchDynamicInt8}
REFERENCE = "torch_fp32"   # accuracy is measured against it
BASELINE = "ort_int8"      # ratios are edgebert / this
