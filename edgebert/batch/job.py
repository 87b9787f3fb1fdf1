"""One batch job: stream records, score them in shards, commit each shard, resume after a crash.

Work goes to ``OUTPUT.partial/``: committed shards and ``manifest.json`` (what the
job is: input identity, model checksum, task and options; how far it got). Re-running
the same command continues after the last committed shard; our results do not depend
on how records are batched, so the output is the one an uninterrupted run writes.
Reading the next shard (and tokenizing it, where a core is spare) and writing the last
one run on their own threads while the current shard is scored.
"""
from __future__ import annotations

import itertools
import json
import os
import queue
import shutil
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import names
from ..errors import InputError
from .progress import Progress
from .scoring import Scorer
from .sinks import Sink, atomic_write, output_format
from .sources import Fields, Record, Source, pyarrow

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
QUEUE_DEPTH = 2  # shards read ahead / waiting to be written


@dataclass
class JobSpec:
    model: str
    input: str
    output: str
    task: str = "embed"  # or a pipeline task
    fields: Fields = field(default_factory=Fields)
    options: dict = field(default_factory=dict)  # the task pipeline's options
    truncate: bool = True
    batch_size: int = 32
    threads: int | None = None
    shard_size: int = 4096
    restart: bool = False
    quiet: bool = False


def run_job(spec: JobSpec) -> dict:
    """Run (or resume) ``spec``; returns the summary. Ctrl-C keeps what is committed."""
    from .. import load

    started = time.perf_counter()
    if isinstance(spec.shard_size, bool) or not isinstance(spec.shard_size, int) or spec.shard_size < 1:
        raise InputError(f"shard_size must be a positive integer, got {spec.shard_size!r}")
    source = Source(spec.input, spec.fields)
    fmt = output_format(spec.output, source.kind, spec.task)
    model = load(spec.model, threads=spec.threads)
    scorer = Scorer(model, spec.task, spec.options, spec.truncate, spec.batch_size, spec.fields)
    out = Path(spec.output)
    work = out.with_name(out.name + ".partial")
    identity = _identity(spec, source, model)
    state = _start(work, identity, spec.restart)
    sink = Sink(fmt, source.id_name, state.setdefault("id_type", _id_type(source)))
    progress = Progress(state["records"], state["rejects"], spec.quiet)
    # Tokenizing the next shard on the reader thread pays only with a core to spare: beside
    # kernels on every core it slows their parallel regions more than it saves.
    ahead = scorer if model.threads < (os.cpu_count() or 1) else None
    reader = _Reader(source, state["records"], spec.shard_size, ahead, state["id_type"])
    writer = _Writer(work, sink, state)
    try:
        for index, (records, first, prepared, rejects) in enumerate(reader, start=len(state["shards"])):
            if prepared is None:
                prepared, rejects = scorer.prepare(records, first)
            ids, values, more = scorer.compute(prepared)
            rejects = sorted(rejects + more, key=lambda r: r["record"]) if more else rejects
            writer.put(index, records, ids, values, rejects)
            progress.update(len(records), len(rejects))
    except BaseException:
        reader.stop()
        writer.close()
        progress.close()
        if sys.exc_info()[0] is KeyboardInterrupt:
            print(f"edgebert: interrupted; {state['records']:,} records are committed in {work}. "
                  "Run the same command again to resume.", file=sys.stderr)
        raise
    writer.close()
    progress.close()
    shards = [work / s["file"] for s in state["shards"]]
    sink.assemble(shards, sum(s["rows"] for s in state["shards"]), out)
    _write_rejects(work, state, out)
    shutil.rmtree(work)
    seconds = time.perf_counter() - started
    from ..runtime.kernels import cpu

    return {"output": str(out), "records": state["records"], "rows": sum(s["rows"] for s in state["shards"]),
            "rejects": state["rejects"], "resumed_at": state["resumed_at"], "seconds": round(seconds, 3),
            "records_per_s": round((state["records"] - state["resumed_at"]) / max(seconds, 1e-9), 1),
            "threads": model.threads, "kernel_path": cpu.kernel_path()}


def _identity(spec: JobSpec, source: Source, model) -> dict:
    return {"version": MANIFEST_VERSION, "input": source.identity(),
            "model": model.file.metadata.get(names.CHECKSUM), "task": spec.task, "fields": asdict(spec.fields),
            "options": json.loads(json.dumps(spec.options, default=str)), "truncate": spec.truncate,
            "output": os.path.abspath(spec.output)}


def _start(work: Path, identity: dict, restart: bool) -> dict:
    """The manifest to continue from: a fresh one, or the committed state of an earlier run."""
    manifest = work / MANIFEST
    if work.exists() and (restart or identity["input"] is None or not manifest.exists()):
        shutil.rmtree(work)
    if manifest.exists():
        state = json.loads(manifest.read_text())
        if state["identity"] != identity:
            changed = [k for k in identity if state["identity"].get(k) != identity[k]]
            raise InputError(f"{work} holds an unfinished job with another {', '.join(changed)}; "
                             "run the same command to resume it, or pass --restart to start over")
        state["resumed_at"] = state["records"]
        return state
    work.mkdir(parents=True)
    return {"identity": identity, "records": 0, "rejects": 0, "shards": [], "resumed_at": 0}


def _id_type(source: Source) -> str | None:
    """The id column's type, fixed for the whole job: "int" or "str"."""
    if not source.id_name:
        return None
    if source.kind == ".txt":
        return "int" if len(source.files) <= 1 else "str"
    if source.kind == ".parquet":
        pa = pyarrow()
        kind = pa.parquet.read_schema(source.files[0]).field(source.fields.id).type
        return "int" if pa.types.is_integer(kind) else "str"
    if source.kind == ".jsonl":
        first = next((r.id for r in source.records() if not r.reason), None)
        return "int" if isinstance(first, int) and not isinstance(first, bool) else "str"
    return "str"


class _Reader:
    """Shards of records, read and prepared (checked, tokenized) one ahead on a thread."""

    def __init__(self, source: Source, skip: int, size: int, scorer: Scorer, id_type: str | None):
        self.queue: queue.Queue = queue.Queue(QUEUE_DEPTH)
        self.stopping = threading.Event()
        records = itertools.islice(source.records(), skip, None)
        self.thread = threading.Thread(target=self._run, args=(records, skip + 1, size, scorer, id_type), daemon=True)
        self.thread.start()

    def _run(self, records, first, size, scorer, id_type):
        try:
            while not self.stopping.is_set():
                chunk = [_typed_id(r, id_type) for r in itertools.islice(records, size)]
                if not chunk:
                    break
                self.queue.put((chunk, first, *(scorer.prepare(chunk, first) if scorer else (None, None))))
                first += len(chunk)
            self.queue.put(None)
        except BaseException as e:  # handed to the main thread
            self.queue.put(e)

    def __iter__(self):
        while (item := self.queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item

    def stop(self):
        self.stopping.set()
        try:
            while True:
                self.queue.get_nowait()
        except queue.Empty:
            pass


def _typed_id(record: Record, id_type: str | None) -> Record:
    if record.reason or id_type is None:
        return record
    if id_type == "int" and (isinstance(record.id, bool) or not isinstance(record.id, int)):
        return Record(record.id, reason=f"id {record.id!r} is not an integer like the first record's")
    if id_type == "str" and not isinstance(record.id, str):
        return Record(str(record.id), record.text, record.pair)
    return record


class _Writer:
    """Commits shards in order on a thread: the shard file, its rejects, then the manifest."""

    def __init__(self, work: Path, sink: Sink, state: dict):
        self.work, self.sink, self.state = work, sink, state
        self.queue: queue.Queue = queue.Queue(QUEUE_DEPTH)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def put(self, *shard):
        if self.error:
            raise self.error
        self.queue.put(shard)

    def _run(self):
        while (shard := self.queue.get()) is not None:
            if self.error is None:
                try:
                    self._commit(*shard)
                except BaseException as e:
                    self.error = e

    def _commit(self, index, records, ids, values, rejects):
        path = self.sink.shard_path(self.work, index)
        self.sink.write_shard(path, ids, values)
        lines = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rejects)
        reject_path = path.with_name(path.name + ".rejects.jsonl")
        atomic_write(reject_path, lambda f: f.write(lines.encode("utf-8")))
        state = self.state
        state["shards"].append({"file": path.name, "rows": len(ids), "rejects": len(rejects)})
        state["records"] += len(records)
        state["rejects"] += len(rejects)
        atomic_write(self.work / MANIFEST, lambda f: f.write(json.dumps(state, indent=1).encode()))

    def close(self):
        self.queue.put(None)
        self.thread.join()
        if self.error:
            raise self.error


def _write_rejects(work: Path, state: dict, out: Path) -> None:
    target = out.with_name(out.stem + ".rejects.jsonl")
    if not state["rejects"]:
        target.unlink(missing_ok=True)  # a stale one from an earlier run would mislead
        return

    def write(f):
        for s in state["shards"]:
            f.write((work / (s["file"] + ".rejects.jsonl")).read_bytes())
    atomic_write(target, write)
