"""Issue 16's figures: the native kernel library against the JIT path and ONNX Runtime int8.

    python -m benchmarks.native [--reps 7] [--threads 1 2] [--out benchmarks/results/native.json]

New process to first embedding and its peak RSS (``coldstart``), whether that
process imported Numba or llvmlite, latency of the model call at 1x16 and
1x128 and throughput on the Lee sentences (one worker process per engine,
interleaved rounds, medians), and installed sizes. The library is built first
(what ``edgebert warmup`` does), so the "edgebert" engine runs it.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import coldstart, engines, inputs, machine, measure
from benchmarks.prepare import prepare
from benchmarks.workers import Worker, engine_env

NAMES = ("edgebert", "edgebert_jit", "ort_int8")
SHAPES = ((1, 16), (1, 128))
OUT = Path(__file__).parent / "results" / "native.json"

_MODULES = """
import json, sys
from benchmarks.engines import ENGINES
ENGINES[sys.argv[2]](json.loads(sys.argv[1]), 1).embed(["one sentence"])
print(json.dumps({m: m in sys.modules for m in ("numba", "llvmlite")}))
"""


def imported(paths: dict, name: str) -> dict:
    """Whether a fresh process that embeds one sentence with engine ``name`` imported numba/llvmlite."""
    run = subprocess.run([sys.executable, "-c", _MODULES, json.dumps(paths), name], env=engine_env(1),
                         cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=600)
    if run.returncode != 0:
        raise RuntimeError(run.stderr[-2000:])
    return json.loads(run.stdout.strip().splitlines()[-1])


def installed_mib(distributions) -> dict:
    """Installed size (MiB) of each distribution's files, from its RECORD."""
    import importlib.metadata as md

    out = {}
    for name in distributions:
        try:
            files = md.files(name) or []
        except md.PackageNotFoundError:
            continue
        out[name] = round(sum(f.locate().stat().st_size for f in files if f.locate().exists()) / 2**20, 1)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=7, help="cold starts per engine and latency rounds")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    started = time.time()
    paths = prepare()
    from edgebert.runtime.native import library

    results = {"machine": machine.machine_info(), "load_average_at_start": list(os.getloadavg()),
               "library": str(library.library_file(library.native_path())),
               "imports": {n: imported(paths, n) for n in NAMES}}
    text = inputs.throughput_corpus()[0]
    results["coldstart"] = {t: coldstart.cold_start(paths, NAMES, t, text, args.reps) for t in args.threads}
    shapes = inputs.latency_inputs(paths["model_dir"], SHAPES)
    corpus = inputs.throughput_corpus(512)
    results["latency"], results["throughput"] = [], []
    for threads in args.threads:
        workers = {n: Worker(engines.ENGINES[n], paths, threads, env=engine_env(threads)) for n in NAMES}
        try:
            for w in workers.values():
                w.ready()
            for (b, t), arrays in shapes.items():
                calls = {n: (lambda w=w: w.time("run", *arrays, warm=1, settle_s=0.02)) for n, w in workers.items()}
                times = measure.interleaved(calls, 6 * args.reps)
                results["latency"].append({"threads": threads, "shape": f"{b}x{t}",
                                           "ms": {n: measure.summary_ms(s) for n, s in times.items()}})
            for w in workers.values():
                w.time("embed", corpus[:64])
            calls = {n: (lambda w=w: w.time("embed", corpus, settle_s=0.02)) for n, w in workers.items()}
            times = measure.interleaved(calls, 3, warmup=0)
            results["throughput"].append({"threads": threads, "texts": len(corpus), "texts_per_s": {
                n: round(len(corpus) / sorted(s)[len(s) // 2], 1) for n, s in times.items()}})
        finally:
            for w in workers.values():
                w.close()
    runtime = ("numpy", "tokenizers", "safetensors", "tqdm")
    results["installed_mib"] = {"edgebert runtime deps": installed_mib(runtime + ("numba", "llvmlite")),
                                "onnxruntime": installed_mib(("onnxruntime",)),
                                "library_kib": round(Path(results["library"]).stat().st_size / 1024, 1)}
    results["load_average_at_end"] = list(os.getloadavg())
    results["elapsed_s"] = round(time.time() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(json.dumps({k: results[k] for k in ("imports", "coldstart", "latency", "throughput", "installed_mib")},
                     indent=1))


if __name__ == "__main__":
    main()
