"""edgebert int8 against ONNX Runtime and PyTorch on all-MiniLM-L6-v2, in one process.

    python -m benchmarks.run [--quick] [--threads 1 2] [--out benchmarks/results]

Per thread count: latency of the model call alone at batch x tokens 1x16,
1x128, 1x512 and 32x128 (identical real token ids for every engine), and
end-to-end throughput embedding the Lee corpus sentences. Then new-process
cold start, peak RSS, file sizes, and accuracy against PyTorch fp32 on the
Pang-Lee sentences. Repetitions are interleaved across engines.
Writes latest.json, latest.md and latest.png under --out.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from benchmarks import coldstart, engines, inputs, machine, measure, report
from benchmarks.prepare import prepare

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
    parser.add_argument("--rebuild", action="store_true", help="re-export the ONNX models")
    parser.add_argument("--no-coldstart", action="store_true")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    names = args.engines
    started = time.time()

    results = {"machine": machine.machine_info(), "mode": "quick" if args.quick else "full",
               "threads": args.threads, "plan": _plain(plan), "engines": {}, "latency": [], "throughput": []}
    log("preparing model files")
    paths = prepare(rebuild=args.rebuild)
    results["ort_models"] = paths["ort_manifest"]
    shapes = inputs.latency_inputs(paths["model_dir"])
    corpus = inputs.throughput_corpus(plan["corpus_limit"])
    accuracy_texts = inputs.accuracy_corpus()
    vectors = {}

    for threads in args.threads:
        # HF tokenizers (used by every engine) reads this at each call: 1 thread means 1 here too.
        os.environ["TOKENIZERS_PARALLELISM"] = "true" if threads > 1 else "false"
        log(f"threads={threads}: loading engines")
        loaded = {name: engines.ENGINES[name](paths, threads) for name in names}
        for (b, t), (ids, mask, types) in shapes.items():
            log(f"threads={threads}: latency {b}x{t}")
            calls = {n: (lambda e=e: e.run(ids, mask, types)) for n, e in loaded.items()}
            times = measure.interleaved(calls, plan["latency_reps"][(b, t)], settle_s=plan["settle_s"],
                                        budget_s=plan["budget_s"], min_reps=plan["min_reps"], warm_each=True)
            results["latency"].append({"threads": threads, "batch": b, "tokens": t,
                                       "engines": {n: measure.summary_ms(s) for n, s in times.items()}})
        log(f"threads={threads}: throughput on {len(corpus)} sentences")
        for e in loaded.values():
            e.embed(corpus[:64])  # warm-up with the batching path
        calls = {n: (lambda e=e: e.embed(corpus)) for n, e in loaded.items()}
        times = measure.interleaved(calls, plan["throughput_rounds"], warmup=0, settle_s=plan["settle_s"],
                                    budget_s=plan["throughput_budget_s"])
        results["throughput"].append({"threads": threads, "texts": len(corpus), "batch_size": engines.BATCH,
                                      "engines": {n: _throughput(s, len(corpus)) for n, s in times.items()}})
        if threads == args.threads[-1]:
            log(f"threads={threads}: accuracy on {len(accuracy_texts)} Pang-Lee sentences")
            vectors = {n: e.embed(accuracy_texts) for n, e in loaded.items()}
        results["engines"] = {n: _describe(n, e, threads) for n, e in loaded.items()}
        del loaded

    if engines.REFERENCE in vectors:
        results["accuracy"] = {"reference": engines.REFERENCE, "texts": len(accuracy_texts),
                               "engines": measure.accuracy(vectors, engines.REFERENCE)}
    if not args.no_coldstart:
        threads = args.threads[-1]
        log(f"cold start, threads={threads}")
        results["coldstart"] = {"threads": threads, "reps": plan["coldstart_reps"],
                                "engines": coldstart.cold_start(paths, names, threads, corpus[0],
                                                                plan["coldstart_reps"])}
    results["runtime"] = machine.runtime_settings()
    results["machine"]["load_average_at_end"] = list(os.getloadavg())
    results["elapsed_s"] = round(time.time() - started, 1)
    report.write_all(results, args.out)
    log(f"done in {results['elapsed_s']} s: {args.out / 'latest.md'}")
    return results


def _plain(plan: dict) -> dict:
    return {k: ({f"{b}x{t}": n for (b, t), n in v.items()} if isinstance(v, dict) else v) for k, v in plan.items()}


def _throughput(seconds: list, n: int) -> dict:
    s = measure.summary_ms(seconds)
    return {"texts_per_s": n / (s["median_ms"] / 1e3), "median_s": s["median_ms"] / 1e3, "n": s["n"]}


def _describe(name: str, engine, threads: int) -> dict:
    out = {"label": engine.label, "file": engine.file, "file_bytes": os.path.getsize(engine.file)}
    if getattr(engine, "file_note", None):
        out["file_note"] = engine.file_note
    if name.startswith("ort"):
        out["settings"] = {"intra_op_num_threads": "threads", "inter_op_num_threads": 1,
                           "allow_spinning": "on (ORT default)", "graph_optimization_level": "ORT_ENABLE_ALL"}
    elif name.startswith("torch"):
        out["settings"] = {"torch.set_num_threads": "threads",
                           "attn_implementation": getattr(engine.model.config, "_attn_implementation", None)}
    else:
        out["settings"] = {"threads": "threads", "max_length": engine.model.max_length}
    return out


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


if __name__ == "__main__":
    main()
