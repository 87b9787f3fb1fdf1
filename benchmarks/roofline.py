"""Roofline line of the report: achieved int8 TOPS per latency shape against this CPU's measured int8 GEMM peak.

Work of one forward of a BERT encoder (B sequences of T tokens, M = B*T rows,
hidden H, feed-forward I, L layers), counted as 2 ops per multiply-add:
  linears   : L * 2*M*(4*H*H + 2*H*I)    Q, K, V, output projection, FF up, FF down
  attention : L * 2 * 2*B*T*T*H          Q.K^T and P.V over all heads (heads * T*T*d, d = H/heads)
Embeddings, layer norms, softmax and GELU are not counted. An engine's
achieved rate is (linears + attention) / median latency, whatever precision
its attention matmuls run in (ONNX Runtime's dynamic int8 and CTranslate2 keep
them in float), so the figure is comparable across engines.

The peak is measured here, on this CPU, per thread count: the best rate over
a few large MiniLM-sized int8 GEMMs (M = 4096 rows, 32x128's size) of
edgebert's own int8 linear (``gemm.qlinear``: quantize, int8 GEMM, dequantize)
and of ONNX Runtime's ``MatMulInteger`` (u8 x s8 -> int32 alone), whichever is
faster, each implementation in a process of its own (one's idle spinning
threads must not slow the other). A ceiling is what the machine does when
undisturbed, so the rate is the fastest of PEAK_REPS calls (the median is
recorded beside it): on a shared machine a median would put the ceiling under
what the engines reach in quieter moments. It is a measured ceiling of this
machine's int8 GEMM code paths, not a datasheet figure; on AVX2 without VNNI
ORT's kernel saturates int16 pair sums (inexact for full-range data), so there
its rate is that of a lossy kernel (the report names the implementation and
gives the other's rate beside it).

    python -m benchmarks.roofline [--threads 1 2]     # print the measured peak
"""
from __future__ import annotations

import json
import time
from pathlib import Path

PEAK_SHAPES = ((4096, 384, 1536), (4096, 1536, 384))  # (M, K, N): MiniLM's FF linears at 32x128
PEAK_REPS = 15
PEAK_IMPLS = ("edgebert", "ort")
INT8_ENGINES = ("edgebert", "edgebert_jit", "edgebert_plain", "ort_int8", "torch_int8", "openvino_int8",
                "ctranslate2_int8")  # engines whose linears run int8 GEMMs (weights-only int8 does not)


def model_dims(model_dir) -> dict:
    """H, I, L, heads of a Hugging Face BERT config.json."""
    c = json.loads((Path(model_dir) / "config.json").read_text())
    return {"hidden": c["hidden_size"], "intermediate": c["intermediate_size"], "layers": c["num_hidden_layers"],
            "heads": c["num_attention_heads"]}


def gemm_ops(dims: dict, batch: int, tokens: int) -> dict:
    """Ops (2 per multiply-add) of the encoder's matmuls for ``batch`` x ``tokens``."""
    if batch < 1 or tokens < 1:
        raise ValueError(f"batch and tokens must be positive, got {batch} x {tokens}")
    H, inter, L = dims["hidden"], dims["intermediate"], dims["layers"]
    M = batch * tokens
    linears = L * 2 * M * (4 * H * H + 2 * H * inter)
    attention = L * 2 * 2 * batch * tokens * tokens * H
    return {"linears": linears, "attention": attention, "total": linears + attention}


def achieved(results: dict, dims: dict, peaks: dict) -> list:
    """Per latency row and int8 engine present: achieved TOPS and its fraction of that thread count's peak."""
    rows = []
    for row in results["latency"]:
        ops = gemm_ops(dims, row["batch"], row["tokens"])["total"]
        peak = peaks.get(str(row["threads"]), {}).get("tops")
        for name, s in row["engines"].items():
            if name not in INT8_ENGINES:
                continue
            tops = ops / (s["median_ms"] / 1e3) / 1e12
            rows.append({"threads": row["threads"], "batch": row["batch"], "tokens": row["tokens"], "engine": name,
                         "tops": tops, "of_peak": tops / peak if peak else None})
    return rows


class GemmPeak:
    """Built in a worker process of its own (benchmarks/workers.py), one per implementation."""

    def __init__(self, threads: int, impl: str):
        if impl not in PEAK_IMPLS:
            raise ValueError(f"impl must be one of {PEAK_IMPLS}, got {impl!r}")
        self.threads, self.impl = threads, impl

    def measure(self) -> dict:
        import numba
        import numpy as np

        from edgebert.runtime.kernels import cpu, gemm

        from benchmarks.bench_gemm import _ort_session

        numba.set_num_threads(self.threads)
        rng = np.random.default_rng(0)
        best = {"tops": 0.0}
        for M, K, N in PEAK_SHAPES:
            qw = rng.integers(-127, 128, (N, K), dtype=np.int8)
            packed = gemm.pack_linear(qw, rng.uniform(1e-3, 1e-2, N).astype(np.float32), np.zeros(N, np.float32))
            x = rng.normal(0, 1, (M, K)).astype(np.float32)
            out = np.empty((M, N), np.float32)
            if self.impl == "edgebert":
                name, fn = f"edgebert qlinear ({cpu.kernel_path()})", lambda: gemm.qlinear(x, packed, out=out)
            else:
                a = rng.integers(0, 256, (M, K), dtype=np.uint8)
                sess = _ort_session(qw, self.threads)
                name, fn = "ORT MatMulInteger", lambda: sess.run(None, {"A": a})
            fn()  # first call: compile / allocate
            seconds = [_time(fn) for _ in range(PEAK_REPS)]
            tops = 2.0 * M * K * N / min(seconds) / 1e12
            if tops > best["tops"]:
                best = {"tops": tops, "impl": name, "shape": f"{M}x{K}x{N}", "best_s": min(seconds),
                        "median_tops": 2.0 * M * K * N / float(np.median(seconds)) / 1e12}
        return {**best, "threads": self.threads, "reps": PEAK_REPS}


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def measure_peaks(thread_counts) -> dict:
    """{str(threads): the faster implementation's GemmPeak.measure()}, each in a fresh worker process,
    one at a time; the slower one's result is kept under "other"."""
    from benchmarks.workers import Worker, engine_env

    peaks = {}
    for threads in thread_counts:
        found = []
        for impl in PEAK_IMPLS:
            with Worker(GemmPeak, threads, impl, env=engine_env(threads)) as w:
                found.append(w.call("measure"))
        found.sort(key=lambda p: -p["tops"])
        peaks[str(threads)] = {**found[0], "other": found[1:]}
    return peaks


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    print(json.dumps(measure_peaks(parser.parse_args().threads), indent=1))
