"""The batch job on Ray Data, for a corpus one machine cannot score overnight.

    read_* -> map_batches(_Scorer, one actor per ``threads`` CPUs) -> write_parquet

Each actor loads the model once (by path: the file must be on storage every node
sees) and scores batches with the same checks and kernels as the local engine, so
a record gets the same vector or the same rejection on either. Ray retries the
batches of an actor that dies. The output is a folder of Parquet parts (Ray's
way); rejected records go to ``OUTPUT.rejects/`` as JSON lines.

    ray.init(address="auto")   # or nothing: a local Ray on this machine
    edgebert embed model.edgebert --input s3-or-nfs/records/ --output out.parquet --engine ray
"""
from __future__ import annotations

import os
import time

from ..errors import InputError
from .job import JobSpec
from .scoring import Scorer
from .sources import Source, to_record

RETRIES = -1  # an actor that dies is restarted and its batches rerun, without limit


class _Scorer:
    """One Ray actor: the model loaded once, then batch after batch."""

    def __init__(self, spec: JobSpec):
        from .. import load

        model = load(spec.model, threads=spec.threads)
        self.scorer = Scorer(model, spec.task, spec.options, spec.truncate, spec.batch_size, spec.fields)
        self.fields, self.task, self.dim = spec.fields, spec.task, model.dim

    def __call__(self, table):
        import json

        import pyarrow as pa

        records = [to_record(r, self.fields, None) for r in table.to_pylist()]
        prepared, rejects = self.scorer.prepare(records, 0)
        _, values, more = self.scorer.compute(prepared)
        reasons = {r["record"]: r["reason"] for r in rejects + more}
        kept = iter(values.tolist() if self.task == "embed" else [json.dumps(v, ensure_ascii=False) for v in values])
        out = [None if n in reasons else next(kept) for n in range(len(records))]
        kind = pa.list_(pa.float32(), self.dim) if self.task == "embed" else pa.string()
        return pa.table({self.fields.id: table[self.fields.id], "embedding" if self.task == "embed" else "result":
                         pa.array(out, type=kind),
                         "_reason": pa.array([reasons.get(n) for n in range(len(records))], type=pa.string())})


def run_on_ray(spec: JobSpec, actors: int | None = None) -> dict:
    """Run ``spec`` on the current Ray cluster (a local one if none is running)."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise InputError("--engine ray needs Ray: pip install 'edgebert[ray]'") from None
    import pyarrow.compute as pc

    started = time.perf_counter()
    source = Source(spec.input, spec.fields)  # the same checks, before any work
    if source.kind == ".txt" or not spec.fields.id:
        raise InputError("--engine ray reads .jsonl, .csv or .parquet with --id-field: Ray writes parts in an "
                         "order it chooses, and the ids tie each result to its record")
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), include_dashboard=False)
    threads = spec.threads or 1
    # one CPU stays free for the read and write tasks: actors holding every CPU starve them (a deadlock)
    actors = actors or max(1, (int(ray.cluster_resources().get("CPU", 1)) - 1) // threads)
    ds = _read(ray.data, source)
    scored = ds.map_batches(_Scorer, fn_constructor_args=(spec,), batch_format="pyarrow",
                            batch_size=spec.shard_size, concurrency=actors, num_cpus=threads,
                            max_restarts=RETRIES, max_task_retries=RETRIES).materialize()
    good = scored.map_batches(lambda t: t.filter(pc.is_null(t["_reason"])).drop_columns(["_reason"]),
                              batch_format="pyarrow")
    good.write_parquet(spec.output)
    bad = scored.map_batches(lambda t: t.filter(pc.is_valid(t["_reason"])), batch_format="pyarrow")
    rejects = bad.count()
    if rejects:
        bad.write_json(spec.output + ".rejects")
    records = scored.count()
    seconds = time.perf_counter() - started
    return {"output": spec.output, "records": records, "rows": records - rejects, "rejects": rejects,
            "resumed_at": 0, "seconds": round(seconds, 3), "records_per_s": round(records / seconds, 1),
            "threads": threads, "actors": actors, "engine": "ray"}


def _read(data, source: Source):
    files, fields = source.files, source.fields
    if source.kind == ".parquet":
        return data.read_parquet(files, columns=[c for c in dict.fromkeys((fields.text, fields.id, fields.pair)) if c])
    if source.kind == ".csv":
        return data.read_csv(files)
    return data.read_json(files, lines=True)
