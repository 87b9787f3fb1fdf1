"""What the numbers were measured on: CPU, cores, load, library versions, date."""
from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import sys

PACKAGES = ("edgebert", "numpy", "numba", "llvmlite", "tokenizers", "onnxruntime", "onnx", "torch",
            "transformers", "optimum", "optimum-onnx", "openvino", "nncf", "ctranslate2")
FLAGS = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")


def cpu_info() -> dict:
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())  # first processor's values
    except OSError:
        pass
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    return {"model": fields.get("model name") or platform.processor() or platform.machine(),
            "flags": [f for f in FLAGS if f in flags], "logical_cores": os.cpu_count(),
            "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None}


def versions() -> dict:
    out = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def runtime_settings() -> dict:
    """Threading layers and kernel choices that change results, for the engines this process ran
    (call in each engine's process after it ran; the coordinator merges them)."""
    out = {"openblas_env": {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                                        "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")
                            if k in os.environ}}
    if "edgebert" in sys.modules:
        import numba

        from edgebert.runtime.kernels.cpu import kernel_path

        try:
            out["numba_threading_layer"] = numba.threading_layer()
        except Exception as e:  # no parallel region has run yet
            out["numba_threading_layer"] = f"unknown ({type(e).__name__})"
        out["edgebert_kernel_path"] = kernel_path()
        out["edgebert_gomp_spincount"] = os.environ.get("GOMP_SPINCOUNT")
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        out["torch_quantized_engine"] = torch.backends.quantized.engine
    return out


def machine_info() -> dict:
    return {"cpu": cpu_info(), "platform": platform.platform(), "versions": versions(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "load_average_at_start": list(os.getloadavg())}
