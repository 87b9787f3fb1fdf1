"""``edgebert bench MODEL``: what this device does with a model, in numbers a user can paste.

Latency of one sequence of 16 and of 128 tokens (median of ``--rounds`` calls after one warm-up
call), throughput on the built-in calibration sentences (edgebert/data/calibration.txt, 64
English sentences, embedded ``--repeat`` times), peak resident memory of the process, the kernel
path and CPU, and one summary line. Everything runs in this process, with no network.
"""
from __future__ import annotations

import json
import platform
import resource
import time
from importlib import resources

import numpy as np

from .errors import InputError

LATENCY_TOKENS = (16, 128)


def add_bench_parser(sub) -> None:
    """The ``bench`` subcommand, for cli.py's parser."""
    b = sub.add_parser("bench", help="latency, throughput, peak memory and kernel path of a model on this device")
    b.add_argument("file", help="a .edgebert model file")
    b.add_argument("--threads", type=int, default=None, help="default: $EDGEBERT_NUM_THREADS or all cores")
    b.add_argument("--rounds", type=int, default=20, help="timed calls per latency (default 20)")
    b.add_argument("--repeat", type=int, default=4, help="passes over the sentences for throughput (default 4)")
    b.add_argument("--json", action="store_true", help="print the report as one JSON object")
    b.set_defaults(func=_bench_command)


def sentences() -> list[str]:
    """The built-in benchmark sentences (the converter's calibration set)."""
    text = resources.files("edgebert").joinpath("data/calibration.txt").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip()]


def _ids(model, tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """One real sequence of exactly ``tokens`` ids ([CLS] ... [SEP]), cut from the sentences."""
    ids = np.asarray(model.tokenize([" ".join(sentences())], truncate=True)[0][0], dtype=np.int64)
    if tokens > len(ids):
        raise InputError(f"the sentences give {len(ids)} tokens, fewer than {tokens}")
    ids = np.concatenate([ids[:tokens - 1], ids[-1:]])[None, :]  # keep the closing [SEP]
    return ids, np.ones_like(ids)


def _median_ms(fn, rounds: int) -> float:
    fn()  # compiles (or loads from Numba's cache) and warms the buffers
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1e3)


def bench(path, threads=None, rounds=20, repeat=4) -> dict:
    """Measure ``path`` on this device; returns the report as a dict."""
    import llvmlite.binding as llb

    from . import load
    from .runtime.kernels import cpu

    if rounds < 1 or repeat < 1:
        raise InputError(f"--rounds and --repeat must be at least 1, got {rounds} and {repeat}")
    t = time.perf_counter()
    model = load(path, threads=threads)
    report = {"model": str(path), "load_s": round(time.perf_counter() - t, 3), "threads": model.threads,
              "machine": platform.machine(), "cpu": llb.get_host_cpu_name(), "kernel_path": cpu.kernel_path()}
    t = time.perf_counter()
    model.embed(sentences()[:2])
    report["first_call_s"] = round(time.perf_counter() - t, 3)  # includes compiling or loading kernels
    for tokens in LATENCY_TOKENS:
        ids, mask = _ids(model, min(tokens, model.max_length))
        report[f"latency_1x{tokens}_ms"] = round(_median_ms(lambda: model.run(ids, mask), rounds), 3)
    texts = sentences() * repeat
    t = time.perf_counter()
    model.embed(texts)
    report["throughput_texts_per_s"] = round(len(texts) / (time.perf_counter() - t), 1)
    report["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux
    report["summary"] = (f"edgebert bench: {report['machine']} {report['cpu']} path={report['kernel_path']} "
                         f"threads={report['threads']} 1x16={report['latency_1x16_ms']:.2f}ms "
                         f"1x128={report['latency_1x128_ms']:.2f}ms {report['throughput_texts_per_s']:.0f} texts/s "
                         f"rss={report['peak_rss_mib']:.0f}MiB first_call={report['first_call_s']:.1f}s")
    return report


def _bench_command(args) -> int:
    report = bench(args.file, args.threads, args.rounds, args.repeat)
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            if key != "summary":
                print(f"{key:24s} {value}")
        print(report["summary"])
    return 0
