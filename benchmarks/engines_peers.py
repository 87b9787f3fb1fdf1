"""OpenVINO and CTranslate2 as engines (the interface of benchmarks/engines.py; registered there).

Their model files are built by benchmarks/export_peers.py. Both take the
peers' shared text path (``engines.Padded``). Threads: OpenVINO
``INFERENCE_NUM_THREADS`` with one stream and the LATENCY hint; CTranslate2
``intra_threads`` with one inter thread (one batch at a time).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.padded import Padded


class OpenVinoFp32(Padded):
    label = "OpenVINO fp32"
    key = "openvino_fp32"
    # f32 forced for every OpenVINO engine: on CPUs with bf16 (AVX-512 BF16, AMX) the plugin's default
    # inference precision is bf16, which would make "fp32" a bf16 engine and the int8 graphs' float parts bf16.
    PRECISION = "f32"
    compiles_per_shape = True  # its first call at a new input shape compiles kernels (run.py warms every width)

    def __init__(self, paths: dict, threads: int):
        import openvino as ov

        self._init_text(paths["model_dir"])
        xml = Path(paths[self.key])
        self.file = str(xml.with_suffix(".bin"))
        self.file_note = "weights; the graph is the .xml beside it"
        self.config = {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
                       "INFERENCE_PRECISION_HINT": self.PRECISION}
        core = ov.Core()
        self.compiled = core.compile_model(core.read_model(xml), "CPU", self.config)
        self.request = self.compiled.create_infer_request()
        self.names = {p.any_name for p in self.compiled.inputs}

    def run(self, ids, mask, types):
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        # The first call at a new shape compiles kernels for it; the benchmark times a later call.
        self.request.infer({k: v for k, v in feeds.items() if k in self.names})
        return self.request.get_output_tensor(0).data.copy()

    def settings(self) -> dict:
        got = {k: str(self.compiled.get_property(k)).replace("<Type: '", "").replace("'>", "") for k in self.config}
        return {**got, "INFERENCE_NUM_THREADS": "threads"}


class OpenVinoInt8(OpenVinoFp32):
    label = "OpenVINO int8 (NNCF PTQ)"
    key = "openvino_int8"


class OpenVinoInt8WeightsOnly(OpenVinoFp32):
    label = "OpenVINO int8 weights-only"
    key = "openvino_int8_wo"


class CTranslate2Int8(Padded):
    label = "CTranslate2 int8"
    key = "ctranslate2_int8"
    file_note = None

    def __init__(self, paths: dict, threads: int):
        import ctranslate2

        self._init_text(paths["model_dir"])
        self.ct2 = ctranslate2
        self.file = paths[self.key]
        self.encoder = ctranslate2.Encoder(str(Path(self.file).parent), device="cpu", compute_type="int8",
                                           intra_threads=threads, inter_threads=1)

    def run(self, ids, mask, types):
        ct2 = self.ct2
        lengths = mask.sum(axis=1).astype(np.int32)
        out = self.encoder.forward_batch(ct2.StorageView.from_array(ids.astype(np.int32)),
                                         ct2.StorageView.from_array(lengths),
                                         token_type_ids=types.astype(np.int32).tolist())
        return np.array(out.last_hidden_state)

    def settings(self) -> dict:
        return {"intra_threads": "threads", "inter_threads": 1, "compute_type": self.encoder.compute_type}


PEERS = {"openvino_fp32": OpenVinoFp32, "openvino_int8": OpenVinoInt8, "openvino_int8_wo": OpenVinoInt8WeightsOnly,
         "ctranslate2_int8": CTranslate2Int8}
