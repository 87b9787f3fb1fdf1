"""edgebert int8 against ONNX Runtime and PyTorch on all-MiniLM-L6-v2, each engine in its own process.

    python -m benchmarks.run [--quick] [--threads 1 2] [--out benchmarks/results]

Per thread count: latency of the model call alone at batch x tokens 1x16,
1x128, 1x512 and 32x128 (identical real token ids for every engine), and
end-to-end throughput embedding the Lee corpus sentences. Then new-process
cold start, peak RSS, file sizes, and accuracy against PyTorch fp32 on the
Pang-Lee sentences. Every engine runs in a worker process of its own
(benchmarks/workers.py), one at a time; repetitions are interleaved across
engines. After each thread count's measurements, this CPU's int8 GEMM peak at
that thread count, in processes of their own (benchmarks/roofline.py), for the
report's roofline line.
Writes NAME.json, NAME.md and NAME.png under --out (--name, default latest).
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from benchmarks import coldstart, engines, inputs, machine, measure, report, roofline
from benchmarks.prepare import prepare
from benchmarks.workers import Worker, engine_env

# Rounds: at most *_reps/rounds, fewer (not under the minimum) when more would run
# past the budget (seconds per shape, or per thread count for throughput).
# settle_s: see measure.interleaved.
FULL = {"latency_reps": {(1, 16): 100, (1, 128): 60, (1, 512): 25, (32, 128): 12},
        "budget_s": 40, "min_reps": 7, "settle_s": 0.02,
        "throughput_rounds": 3, "throughput_budget_s": 200, "corpus_limit": None, "coldstart_reps": 3}
QUICK = {"latency_reps": {(1, 16): 10, (1, 128): 5, (1, 512): 3, (32, 128): 2},
         "budget_s": 6, "min_reps": 2, "settle_s": 0.02,
         "throughput_rounds": 1, "throughput_budget_s": None, "corpus_limit": 256, "coldstart_reps": 1}
DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repetitions, part of the corpus (~3 min)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--engines", nargs="+", choices=list(engines.ENGINES), default=list(engines.ENGINES))
    parser.add_argument("--rebuild", action="store_true", help="re-export the ONNX, OpenVINO and CTranslate2 models")
    parser.add_argument("--no-coldstart", action="store_true")
    parser.add_argument("--name", default="latest", help="file names of the results: NAME.json, NAME.md, NAME.png")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    names = args.engines
    started = time.time()

    results = {"machine": machine.machine_info(), "mode": "quick" if args.quick else "full",
               "threads": args.threads, "plan": _plain(plan), "isolation": "process per engine",
               "engines": {}, "latency": [], "throughput": []}
    log("preparing model files")
    paths = prepare(rebuild=args.rebuild, engines=names)
    results["ort_models"] = paths["ort_manifest"]
    results["peer_models"] = paths["peer_manifest"]
    results["model_dims"] = roofline.model_dims(paths["model_dir"])
    shapes = inputs.latency_inputs(paths["model_dir"])
    corpus = inputs.throughput_corpus(plan["corpus_limit"])
    accuracy_texts = inputs.accuracy_corpus()
    vectors = {}

    for threads in args.threads:
        log(f"threads={threads}: starting one worker process per engine")
        workers = {name: Worker(engines.ENGINES[name], paths, threads, env=engine_env(threads)) for name in names}
        try:
            for w in workers.values():
                w.ready()
            _measure(workers, threads, plan, shapes, corpus, results)
            log(f"threads={threads}: int8 GEMM peak (roofline), after this thread count's measurements")
            results.setdefault("gemm_peak", {}).update(roofline.measure_peaks([threads]))
            if threads == args.threads[-1]:
                log(f"threads={threads}: accuracy on {len(accuracy_texts)} Pang-Lee sentences")
                vectors = {n: w.call("embed", accuracy_texts) for n, w in workers.items()}
            results["engines"] = {n: w.call("describe") for n, w in workers.items()}
            results["runtime"] = {}
            for w in workers.values():
                results["runtime"].update(w.call(machine.runtime_settings))
        finally:
            for w in workers.values():
                w.close()

    if engines.REFERENCE in vectors:
        results["accuracy"] = {"reference": engines.REFERENCE, "texts": len(accuracy_texts),
                               "engines": measure.accuracy(vectors, engines.REFERENCE)}
    if not args.no_coldstart:
        threads = args.threads[-1]
        log(f"cold start, threads={threads}")
        results["coldstart"] = {"threads": threads, "reps": plan["coldstart_reps"],
                                "engines": coldstart.cold_start(paths, names, threads, corpus[0],
                                                                plan["coldstart_reps"])}
    results["machine"]["load_average_at_end"] = list(os.getloadavg())
    results["elapsed_s"] = round(time.time() - started, 1)
    report.write_all(results, args.out, args.name)
    log(f"done in {results['elapsed_s']} s: {args.out / (args.name + '.md')}")
    return results


def _measure(workers: dict, threads: int, plan: dict, shapes: dict, corpus: list, results: dict) -> None:
    """Latency at every shape, then throughput on the corpus: one engine at a time, interleaved."""
    settle = plan["settle_s"]
    for (b, t), arrays in shapes.items():
        log(f"threads={threads}: latency {b}x{t}")
        calls = {n: (lambda w=w: w.time("run", *arrays, warm=1, settle_s=settle)) for n, w in workers.items()}
        times = measure.interleaved(calls, plan["latency_reps"][(b, t)], budget_s=plan["budget_s"],
                                    min_reps=plan["min_reps"])
        results["latency"].append({"threads": threads, "batch": b, "tokens": t,
                                   "engines": {n: measure.summary_ms(s) for n, s in times.items()}})
    log(f"threads={threads}: throughput on {len(corpus)} sentences")
    for name, w in workers.items():
        # Warm-up with the batching path. An engine that compiles kernels per new input shape
        # (OpenVINO) first sees every batch width the timed passes will use.
        warm = corpus if getattr(engines.ENGINES[name], "compiles_per_shape", False) else corpus[:64]
        w.time("embed", warm, settle_s=settle)
    calls = {n: (lambda w=w: w.time("embed", corpus, settle_s=settle)) for n, w in workers.items()}
    times = measure.interleaved(calls, plan["throughput_rounds"], warmup=0, budget_s=plan["throughput_budget_s"])
    results["throughput"].append({"threads": threads, "texts": len(corpus), "batch_size": engines.BATCH,
                                  "engines": {n: _throughput(s, len(corpus)) for n, s in times.items()}})


def _plain(plan: dict) -> dict:
    return {k: ({f"{b}x{t}": n for (b, t), n in v.items()} if isinstance(v, dict) else v) for k, v in plan.items()}


def _throughput(seconds: list, n: int) -> dict:
    s = measure.summary_ms(seconds)
    return {"texts_per_s": n / (s["median_ms"] / 1e3), "median_s": s["median_ms"] / 1e3, "n": s["n"]}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


if __name__ == "__main__":
    main()
