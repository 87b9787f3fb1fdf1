"""Load test of ``edgebert serve`` over loopback (bounded: a fixed list of requests, then it stops).

Requests/s and p50/p99 latency at 1, 8 and 32 concurrent clients; the throughput dynamic
batching gains over one request at a time (the same server with --max-batch-tokens 1: no
gathering); start-up time to ready, resident memory idle, and CPU used while idle.

    python -m benchmarks.serve_load [--model FILE] [--requests 192] [--output benchmarks/results/serve_load.json]

Every answer is checked against ``model.embed`` on the same texts (bit for bit).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

CLIENT_COUNTS = (1, 8, 32)
# one request at a time: a token budget of 1 gathers nothing beyond the first request
MODES = {"batched": [], "unbatched": ["--max-batch-tokens", "1"]}
IDLE_WINDOW_S = 2.0
READY_TIMEOUT_S = 180


def run_clients(url: str, requests: list[list[str]], clients: int, expected: dict | None = None,
                timeout_s: float = 60) -> dict:
    """``clients`` threads, each with its own connection, take the next request until none are
    left; every answer is compared with ``expected[text]`` (exact float32 bits)."""
    import httpx

    todo = iter(list(enumerate(requests)))
    lock = threading.Lock()
    latencies, errors, wrong = [], [], []

    def client():
        with httpx.Client(base_url=url, timeout=timeout_s) as http:
            while True:
                with lock:
                    item = next(todo, None)
                if item is None:
                    return
                i, texts = item
                start = time.perf_counter()
                try:
                    r = http.post("/v1/embeddings", json={"input": texts, "encoding_format": "float"})
                except httpx.HTTPError as e:
                    errors.append(f"request {i}: {type(e).__name__}: {e}")
                    continue
                latencies.append(time.perf_counter() - start)
                if r.status_code != 200:
                    errors.append(f"request {i}: {r.status_code} {r.text[:200]}")
                elif expected is not None:
                    got = np.array([d["embedding"] for d in r.json()["data"]], dtype=np.float32)
                    if not np.array_equal(got, np.stack([expected[t] for t in texts])):
                        wrong.append(i)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    ms = sorted(x * 1000 for x in latencies)
    return {"clients": clients, "requests": len(requests), "errors": len(errors), "wrong": len(wrong),
            "first_errors": errors[:3], "seconds": wall, "requests_per_s": len(requests) / wall,
            "texts_per_s": sum(map(len, requests)) / wall,
            "p50_ms": _percentile(ms, 50), "p99_ms": _percentile(ms, 99)}


def _percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(round(q / 100 * (len(sorted_values) - 1))))]


class ServerProcess:
    """``edgebert serve`` in a child process on a free loopback port."""

    def __init__(self, model: str, *flags: str):
        self.start = time.perf_counter()
        self.proc = subprocess.Popen([sys.executable, "-m", "edgebert.cli", "serve", model, "--port", "0", *flags],
                                     stderr=subprocess.PIPE, text=True)
        self.url = self.ready_s = self.ready_rss_mib = None
        lines = []
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline and self.ready_s is None:
            line = self.proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            if m := re.search(r"on (http://\S+) ", line):
                self.url = m.group(1)
            if m := re.search(r"ready \(kernels and models loaded in ([\d.]+) s\), (\d+) MiB", line):
                self.ready_s = time.perf_counter() - self.start  # from launching the process
                self.ready_rss_mib = float(m.group(2))
        if self.ready_s is None:
            self.stop()
            raise RuntimeError("the server did not become ready:\n" + "".join(lines))

    def cpu_s(self) -> float:
        """User + system CPU seconds of the process so far (Linux /proc)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mib(self) -> float:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024

    def stop(self) -> int:
        self.proc.terminate()
        try:
            return self.proc.wait(60)
        finally:
            self.proc.stderr.close()


def idle_cpu_s(server: ServerProcess, window_s: float = IDLE_WINDOW_S) -> float:
    before = server.cpu_s()
    time.sleep(window_s)
    return server.cpu_s() - before


def make_requests(texts: list[str], n: int, per_request: int, seed: int = 0) -> list[list[str]]:
    rng = random.Random(seed)
    return [rng.sample(texts, per_request) for _ in range(n)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None, help=".edgebert file (default: MiniLM int8, converted into the cache)")
    p.add_argument("--requests", type=int, default=192, help="requests per measurement")
    p.add_argument("--texts-per-request", type=int, default=4)
    p.add_argument("--threads", type=int, default=None, help="the server's --threads (default: its own)")
    p.add_argument("--repeats", type=int, default=3, help="measurements per setting (the median is reported)")
    p.add_argument("--output", default=str(Path(__file__).parent / "results" / "serve_load.json"))
    args = p.parse_args(argv)

    import edgebert
    from benchmarks.inputs import throughput_corpus

    model_file = args.model or _minilm()
    texts = throughput_corpus(2000)
    requests = make_requests(texts, args.requests, args.texts_per_request)
    used = sorted({t for r in requests for t in r})
    expected = dict(zip(used, edgebert.load(model_file, threads=1).embed(used)))
    flags = ["--threads", str(args.threads)] if args.threads else []
    report = {"model": str(model_file), "requests": args.requests, "texts_per_request": args.texts_per_request,
              "repeats": args.repeats, "cpu_count": os.cpu_count(), "load_average": os.getloadavg()}
    # Both servers run side by side (idle, one does not slow the other) and the measurements
    # alternate between them, so background load on a shared machine hits both alike.
    servers = {mode: ServerProcess(model_file, *flags, *extra) for mode, extra in MODES.items()}
    runs = {(mode, c): [] for mode in MODES for c in CLIENT_COUNTS}
    try:
        for mode, server in servers.items():
            report[mode] = {"startup_s": server.ready_s, "rss_ready_mib": server.ready_rss_mib}
            run_clients(server.url, requests[:8], 4, expected)  # warm the connection paths
        for _ in range(args.repeats):
            for clients in CLIENT_COUNTS:
                for mode, server in servers.items():
                    runs[mode, clients].append(run_clients(server.url, requests, clients, expected))
        for (mode, clients), results in runs.items():
            report[mode][f"clients_{clients}"] = summary = median_run(results)
            print(f"{mode:9s} {clients:2d} clients: {summary['requests_per_s']:7.1f} req/s, p50 "
                  f"{summary['p50_ms']:.1f} ms, p99 {summary['p99_ms']:.1f} ms, errors {summary['errors']}, "
                  f"wrong {summary['wrong']}", flush=True)
        for mode, server in servers.items():
            report[mode]["idle_cpu_s_per_s"] = idle_cpu_s(server) / IDLE_WINDOW_S
            report[mode]["rss_idle_mib"] = server.rss_mib()
    finally:
        for mode, server in servers.items():
            report.setdefault(mode, {})["exit_code"] = server.stop()
    for clients in CLIENT_COUNTS:
        key = f"clients_{clients}"
        report[f"batching_gain_{key}"] = (report["batched"][key]["requests_per_s"]
                                          / report["unbatched"][key]["requests_per_s"])
    Path(args.output).write_text(json.dumps(report, indent=2))
    print(f"batching gain at 8 / 32 clients: {report['batching_gain_clients_8']:.2f}x / "
          f"{report['batching_gain_clients_32']:.2f}x; startup {report['batched']['startup_s']:.1f} s; idle RSS "
          f"{report['batched']['rss_idle_mib']:.0f} MiB; idle CPU {report['batched']['idle_cpu_s_per_s'] * 1000:.1f} "
          f"ms/s; wrote {args.output}")
    return 0


def median_run(results: list[dict]) -> dict:
    """The run with the median throughput; errors and wrong answers summed over all runs."""
    middle = sorted(results, key=lambda r: r["requests_per_s"])[len(results) // 2]
    return {**middle, "errors": sum(r["errors"] for r in results), "wrong": sum(r["wrong"] for r in results),
            "all_requests_per_s": [r["requests_per_s"] for r in results]}


def _minilm() -> str:
    from edgebert.converters import convert

    from benchmarks.prepare import CACHE, model_dir

    out = CACHE / "all-MiniLM-L6-v2.int8.edgebert"
    if not out.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        convert(model_dir(), out, dtype="int8")
    return str(out)


if __name__ == "__main__":
    sys.exit(main())
