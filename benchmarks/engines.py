"""The engines compared, one small class each, with one interface.

    engine.run(ids, mask, types)  -> last hidden state (B, T, H): the model call alone
    engine.embed(texts)           -> (n, H) float32: tokenize + model + mean pool + normalize
    engine.describe()             -> label, model file, settings (for the report)

Every library is imported inside its class, so each engine's process (a
benchmark worker or a cold-start child) loads only its own. The peers share one text path
(``Padded``, benchmarks/padded.py): the model's
tokenizer.json through HF tokenizers (what edgebert uses too), truncation at
the model's max_seq_length, sorting by length, batches of 32 padded to their
longest text, mean pooling over the mask, L2 normalisation
(sentence-transformers' all-MiniLM-L6-v2 pipeline). edgebert uses its own ``embed``.
"""
from __future__ import annotations

from pathlib import Path

from benchmarks.engines_peers import PEERS
from benchmarks.padded import BATCH, Engine, Padded, mean_pool_normalize  # noqa: F401  (re-exported)


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
ENGINES.update(PEERS)  # OpenVINO, CTranslate2 (benchmarks/engines_peers.py)
REFERENCE = "torch_fp32"   # accuracy is measured against it
BASELINE = "ort_int8"      # ratios are edgebert / this
