"""Run header mutants (tests/fuzz_header.py) through load, embed and run in a limited child process.

One child serves many mutants (Numba compiles once), under an address-space
and CPU-time limit (resource.setrlimit); the parent waits a bounded time for
each answer and starts a fresh child after a crash or a hang. Outcomes:
refused (InvalidModelFile), consistent (loaded, the oracle finds nothing),
contradicting (loaded, the description says something the content does not),
crashed (any other exception, or the child died), hung, non_finite.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import random
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MEMORY_LIMIT = 4 << 30  # address space: Numba's LLVM and the tiny model need well under 1 GiB resident
CPU_LIMIT_S = 600  # a child's whole life: the parent's per-mutant timeout acts first
TIMEOUT_S = 30.0  # per mutant: a tiny model loads and runs in well under a second
READY_TIMEOUT_S = 600.0  # the first load compiles the kernels (cached on disk afterwards)
OUTCOMES = ("refused", "consistent", "contradicting", "crashed", "hung", "non_finite")
TEXTS = ["hello world", "the quick brown fox jumps over the lazy dog", "a"]


# ----------------------------------------------------------------- the child


def _limit() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_LIMIT_S, CPU_LIMIT_S))


def _try(path: str) -> dict:
    import numpy as np

    import edgebert
    from edgebert.errors import InvalidModelFile
    from fuzz_header import oracle

    try:
        model = edgebert.load(path, threads=1)
    except InvalidModelFile as exc:
        return {"outcome": "refused", "detail": str(exc).split(": ", 1)[-1][:300]}
    try:
        vectors = model.embed(TEXTS)
        ids = np.array([[101, 1000, 1001, 102], [101, 1002, 102, 0]])
        mask = (ids != 0).astype(np.int64)
        hidden = model.run(ids, mask)
        outputs = model.forward(ids, mask)
    except Exception as exc:  # a loaded file must run
        return {"outcome": "crashed", "detail": f"after load: {type(exc).__name__}: {exc}"[:300]}
    arrays = [vectors, hidden, *outputs.values()]
    if not all(np.isfinite(a).all() for a in arrays):
        return {"outcome": "non_finite", "detail": "NaN or inf in the outputs"}
    bad = oracle(model, hidden, vectors, outputs)
    return {"outcome": "contradicting" if bad else "consistent", "detail": "; ".join(bad)[:300]}


def child() -> None:
    os.environ.setdefault("EDGEBERT_NUM_THREADS", "1")
    sys.path.insert(0, str(HERE))
    _limit()
    for line in sys.stdin:
        request = json.loads(line)
        try:
            answer = _try(request["path"])
        except Exception as exc:  # the loader itself raised something else: a crash, not a refusal
            answer = {"outcome": "crashed", "detail": f"{type(exc).__name__}: {exc}"[:300]}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


# ---------------------------------------------------------------- the parent


class Worker:
    """One child at a time; ``ask`` returns its answer, or a crash/hang outcome and a fresh child next time."""

    def __init__(self, warm_path: Path):
        self.warm_path, self.proc, self.restarts = warm_path, None, 0

    def _start(self) -> None:
        env = {**os.environ, "EDGEBERT_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--child"], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, bufsize=1)
        warm = self._ask(str(self.warm_path), READY_TIMEOUT_S)
        if warm["outcome"] != "consistent":
            raise RuntimeError(f"the unmutated file does not pass: {warm}")

    def _ask(self, path: str, timeout: float) -> dict:
        self.proc.stdin.write(json.dumps({"path": path}) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else None
        if line:
            return json.loads(line)
        hung = not ready
        self.close()
        return {"outcome": "hung" if hung else "crashed",
                "detail": f"no answer in {timeout:.0f} s" if hung else "the child process died"}

    def ask(self, path: Path) -> dict:
        if self.proc is None:
            self.restarts += 1
            self._start()
        return self._ask(str(path), TIMEOUT_S)

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


def run_corpus(bases: dict, per_object: int, seed: int, folder: Path) -> list[dict]:
    """Every mutant of every base file through one worker; one record per mutant."""
    from fuzz_header import mutants, write_mutant

    records = []
    for base_name, base in bases.items():
        worker = Worker(base)
        try:
            rng = random.Random(f"{seed}:{base_name}")
            for n, (kind, label, meta, shapes) in enumerate(mutants(base, rng, per_object)):
                path = folder / f"{base_name}.{n}.edgebert"
                try:
                    write_mutant(path, base, meta, shapes)
                except ValueError as exc:  # our writer refuses it: so would every reader
                    records.append({"base": base_name, "kind": kind, "label": label, "outcome": "refused",
                                    "detail": f"writer: {exc}"[:300]})
                    continue
                answer = worker.ask(path)
                records.append({"base": base_name, "kind": kind, "label": label, **answer})
                path.unlink()
        finally:
            worker.close()
    return records


def table(records: list[dict]) -> str:
    counts = collections.defaultdict(collections.Counter)
    for r in records:
        counts[r["kind"]][r["outcome"]] += 1
        counts["all"][r["outcome"]] += 1
    rows = [f"{'kind':18s}" + "".join(f"{o:>14s}" for o in OUTCOMES)]
    for kind in sorted(counts, key=lambda k: (k == "all", k)):
        rows.append(f"{kind:18s}" + "".join(f"{counts[kind][o]:14d}" for o in OUTCOMES))
    return "\n".join(rows)


def main() -> None:
    sys.path.insert(0, str(HERE))
    from fuzz_header import BASES

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--per-object", type=int, default=40, help="edits per metadata object and base file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--minilm", metavar="FILE", default=None, help="also fuzz this converted MiniLM file")
    p.add_argument("--only", default=None, help="comma-separated base names to fuzz (default: all)")
    p.add_argument("--show", default="contradicting,crashed,hung,non_finite", help="outcomes to list one by one")
    args = p.parse_args()
    bases = dict(BASES)
    if args.minilm:
        bases["minilm"] = Path(args.minilm)
    if args.only:
        bases = {k: v for k, v in bases.items() if k in args.only.split(",")}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        records = run_corpus(bases, args.per_object, args.seed, Path(tmp))
    for r in records:
        if r["outcome"] in args.show.split(","):
            print(f"{r['outcome']:13s} {r['base']:9s} {r['kind']:16s} {r['label'][:60]:60s} {r['detail'][:160]}")
    print(table(records))
    print(f"{len(records)} mutants in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    if sys.argv[1:] == ["--child"]:
        child()
    else:
        main()
