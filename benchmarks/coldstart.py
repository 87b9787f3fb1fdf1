"""Cold start: a new Python process that imports an engine, loads its model and
embeds one sentence. Wall time from spawn to the first embedding, and the
child's peak RSS (ru_maxrss). One warm-up spawn per engine fills the OS file
cache and Numba's kernel cache; then ``reps`` rounds, interleaved.

Each child starts from the benchmark's own environment (``workers.engine_env``), not
the coordinator's, where importing edgebert has set GOMP_SPINCOUNT.

Peak RSS is the child's VmHWM (/proc/self/status): on Linux ``ru_maxrss``
keeps the parent's peak across fork + exec, so a child of the big benchmark
process would report the parent's 2 GB.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.workers import engine_env

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import json, sys, time
from benchmarks.engines import ENGINES
paths, name, threads, text = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
vector = ENGINES[name](paths, threads).embed([text])
done = time.time()
hwm = [int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")][0]
print(json.dumps({"done": done, "peak_rss_kib": hwm, "dim": int(vector.shape[1])}))
"""


def spawn(paths: dict, name: str, threads: int, text: str) -> dict:
    env = engine_env(threads)
    start = time.time()
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(paths), name, str(threads), text],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"cold-start child for {name} failed:\n{proc.stderr[-2000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"wall_s": result["done"] - start, "peak_rss_mib": result["peak_rss_kib"] / 1024}


def cold_start(paths: dict, names, threads: int, text: str, reps: int = 3) -> dict:
    for name in names:  # warm-up: caches
        spawn(paths, name, threads, text)
    runs = {name: [] for name in names}
    for _ in range(reps):
        for name in names:
            runs[name].append(spawn(paths, name, threads, text))
    return {name: {"wall_s": float(np.median([r["wall_s"] for r in rs])),
                   "peak_rss_mib": float(np.median([r["peak_rss_mib"] for r in rs])),
                   "walls_s": [round(r["wall_s"], 4) for r in rs]} for name, rs in runs.items()}
