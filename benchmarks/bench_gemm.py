"""Int8 linear kernels vs ONNX Runtime MatMulInteger, same process, interleaved.

    python benchmarks/bench_gemm.py [--reps 7] [--quick]

Measures, per (M, K, N) and thread count (1 and 2), for each fast kernel
path this CPU runs (``--paths``, default amx and avx512vnni where available,
else the detected one):
  <path>_fused : qlinear (f32 in: quantize + int8 GEMM + dequant + bias, f32 out)
  <path>_int8  : the pure int8 GEMM (u8 x s8 -> int32, zero-point corrected)
  ort_int8   : ONNX Runtime MatMulInteger, u8 x s8 -> int32 (a_zero_point 128)
  numpy_f32  : numpy float32 matmul (OpenBLAS), for scale, with --numpy only
Implementations take turns within each repetition; the median per-call time
over repetitions is reported. ORT's idle threads are told not to spin, or
they would steal the core from whichever implementation runs next. GOPS = 2*M*K*N / time. Writes
benchmarks/results/gemm.json and prints a markdown table.
Run with OMP_WAIT_POLICY=passive when other processes share the cores: with
Numba's OpenMP layer, spinning workers made 2-thread calls take milliseconds
on 2 busy cores (0-20 GOPS). The 1-minute load average is recorded.
OpenBLAS reads OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE / OPENBLAS_NUM_THREADS
from the environment; set or unset them on the command line, not here.
"""

import argparse
import json
import os
import platform
import time
from pathlib import Path

from edgebert.runtime.kernels import cpu, gemm  # first: Numba with edgebert's target settings (runtime/startup.py)

import numba  # noqa: E402
import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

MS = (1, 16, 128, 512, 4096)
KNS = ((384, 1152), (384, 384), (384, 1536), (1536, 384))  # all-MiniLM-L6-v2 linears
THREADS = (1, 2)
TARGET_S = 0.02  # per timed batch of calls
RESULTS = Path(__file__).resolve().parent / "results" / "gemm.json"


def _ort_session(qw, threads):
    """MatMulInteger(A u8 (M,K), B s8 (K,N) constant, a_zero_point=128)."""
    K = qw.shape[1]
    b = numpy_helper.from_array(np.ascontiguousarray(qw.T), "B")
    azp = numpy_helper.from_array(np.array(128, np.uint8), "azp")
    node = helper.make_node("MatMulInteger", ["A", "B", "azp"], ["Y"])
    graph = helper.make_graph(
        [node],
        "mmi",
        [helper.make_tensor_value_info("A", TensorProto.UINT8, ["M", K])],
        [helper.make_tensor_value_info("Y", TensorProto.INT32, ["M", qw.shape[0]])],
        initializer=[b, azp],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _calls_for(fn):
    """How many calls make one timed batch of about TARGET_S."""
    fn()  # untimed: a first call may compile or load cached kernels (1 call per batch otherwise)
    t0 = time.perf_counter()
    fn()
    dt = max(time.perf_counter() - t0, 1e-7)
    return max(1, int(TARGET_S / dt))


def _default_paths():
    fast = [p for p in ("amx", "avx512vnni") if p in cpu.available_paths()]
    return fast or [cpu.kernel_path()]


def _ours(path, qw, scale, bias, x, q, exact):
    """(fused, int8) callables for one kernel path, checked against ORT's integers."""
    M, N = x.shape[0], qw.shape[0]
    packed = gemm.pack_linear(qw, scale, bias, path=path)
    xq = gemm._prepare_rows(q, packed)
    # 64-byte aligned like ORT's outputs (and qlinear's own out=None).
    out = gemm._aligned_empty(M * N * 4).view(np.float32).reshape(M, N)
    out_i = gemm._aligned_empty(M * N * 4).view(np.int32).reshape(M, N)
    # Exact integers against the int64 product: a cheap end-to-end sanity check. (Not against
    # ORT's: on AVX2 without VNNI its u8 x s8 kernel sums pairs with vpmaddubsw, which
    # saturates at int16, so its integers are not exact there; "exact_fraction" records how far.)
    if not np.array_equal(gemm._gemm_i32(xq, packed, out_i), exact):
        raise AssertionError(f"{path} int8 GEMM is not exact at {M}x{qw.shape[1]}x{N}")
    return lambda: gemm.qlinear(x, packed, out=out), lambda: gemm._gemm_i32(xq, packed, out_i)


def _bench_shape(M, K, N, threads, reps, rng, with_numpy, paths):
    qw = rng.integers(-127, 128, (N, K), dtype=np.int8)
    scale = rng.uniform(1e-3, 1e-2, N).astype(np.float32)
    bias = rng.normal(0, 1, N).astype(np.float32)
    x = rng.normal(0, 1, (M, K)).astype(np.float32)
    q = gemm.quantize_rows(x)[0]
    a_u8 = (q.astype(np.int16) + 128).astype(np.uint8)
    sess = _ort_session(qw, threads)
    feeds = {"A": a_u8}
    wt = np.ascontiguousarray(qw.T.astype(np.float32))
    out_np = np.empty((M, N), np.float32)
    exact = q.astype(np.int64) @ qw.T.astype(np.int64)
    ort_exact = float(np.mean(sess.run(None, feeds)[0] == exact))
    impls = {"ort_int8": lambda: sess.run(None, feeds)}
    for path in paths:
        impls[f"{path}_fused"], impls[f"{path}_int8"] = _ours(path, qw, scale, bias, x, q, exact)
    if with_numpy:
        impls["numpy_f32"] = lambda: np.matmul(x, wt, out=out_np)
    numba.set_num_threads(threads)
    counts = {name: _calls_for(fn) for name, fn in impls.items()}
    times = {name: [] for name in impls}
    for _ in range(reps):
        for name, fn in impls.items():
            n = counts[name]
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            times[name].append((time.perf_counter() - t0) / n)
    ops = 2.0 * M * K * N
    res = {
        name: {"median_s": float(np.median(ts)), "gops": ops / float(np.median(ts)) / 1e9}
        for name, ts in times.items()
    }
    res["ort_int8"]["exact_fraction"] = ort_exact  # share of ORT's int32 outputs equal to the exact product
    return res


def _table(rows, paths):
    cols = "".join(f" {p} int8 GEMM | ratio | {p} fused qlinear | ratio |" for p in paths)
    head = f"| M x K x N | thr | ORT MatMulInteger |{cols} numpy f32 |\n|---|--:|--:|" + "--:|" * (4 * len(paths) + 1)
    lines = [head]
    for r in rows:
        g = {k: v["gops"] for k, v in r["results"].items()}
        np_col = f"{g['numpy_f32']:.0f}" if "numpy_f32" in g else "-"
        ours = "".join(
            f" {g[f'{p}_{kind}']:.0f} | {g[f'{p}_{kind}'] / g['ort_int8']:.2f} |" for p in paths for kind in ("int8", "fused")
        )
        lines.append(f"| {r['M']}x{r['K']}x{r['N']} | {r['threads']} | {g['ort_int8']:.0f} |{ours} {np_col} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="M in (1, 128) only")
    ap.add_argument("--numpy", action="store_true", help="also time numpy f32 matmul")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--paths", default=None, help="comma-separated kernel paths (default: amx,avx512vnni where available)")
    ap.add_argument("--threads", default=None, help="comma-separated thread counts (default: 1,2)")
    ap.add_argument("--ms", default=None, help="comma-separated M values (default: all)")
    args = ap.parse_args()
    paths = args.paths.split(",") if args.paths else _default_paths()
    threads_list = tuple(int(t) for t in args.threads.split(",")) if args.threads else THREADS
    rng = np.random.default_rng(0)
    ms = (1, 128) if args.quick else MS
    if args.ms:
        ms = tuple(int(m) for m in args.ms.split(","))
    rows = []
    load_before = os.getloadavg()
    for threads in threads_list:
        if threads > numba.config.NUMBA_NUM_THREADS:
            continue
        for K, N in KNS:
            for M in ms:
                res = _bench_shape(M, K, N, threads, args.reps, rng, args.numpy, paths)
                rows.append({"M": M, "K": K, "N": N, "threads": threads, "results": res})
                print(_table(rows[-1:], paths).splitlines()[-1], flush=True)
    meta = {
        "cpu": platform.processor() or platform.machine(),
        "llvm_cpu": __import__("llvmlite.binding", fromlist=["x"]).get_host_cpu_name(),
        "kernel_path": cpu.kernel_path(),
        "paths": paths,
        "numba": numba.__version__,
        "numpy": np.__version__,
        "onnxruntime": ort.__version__,
        "onnx": onnx.__version__,
        "reps": args.reps,
        "openblas_env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS")},
        "ort_spinning": False,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "numba_threading_layer": numba.threading_layer(),
        "loadavg_before_after": [load_before, os.getloadavg()],
        "note": "GOPS = 2*M*K*N / median seconds per call; implementations interleaved",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print()
    print(_table(rows, paths))


if __name__ == "__main__":
    main()
