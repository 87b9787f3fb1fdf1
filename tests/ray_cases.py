"""The batch job on a local Ray: the local engine's results, and a killed actor retried.

Run by tests/test_batch_ray.py inside a private network namespace (only loopback exists
there), because Ray 2.60's servers listen on every interface whatever node IP is given.
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time

import pyarrow.parquet as pq
import pytest

from edgebert.batch import Fields, JobSpec, run_job
from edgebert.errors import InputError

ray = pytest.importorskip("ray", reason="Ray is the [ray] extra (installed by the test extra)")
psutil = pytest.importorskip("psutil")

SHARD = 40
MARK = str(os.getpid())  # our actors carry it: only they are killed


@pytest.fixture(scope="module")
def local_ray():
    # 3 logical CPUs: 2 actors and the read/write tasks (Ray's CPUs are slots, not cores)
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"EDGEBERT_NUM_THREADS": "1", "EDGEBERT_RAY_TEST": MARK}})
    yield
    ray.shutdown()


def _records(folder, texts):
    path = folder / "in.jsonl"
    rows = [{"key": i, "body": t} for i, t in enumerate(texts)]
    rows[7]["body"] = 7  # a reject on both engines
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def records(tmp_path_factory, pang_lee_texts):
    return _records(tmp_path_factory.mktemp("ray"), pang_lee_texts * 3)


@pytest.fixture(scope="module")
def long_records(tmp_path_factory, pang_lee_texts):
    """Long enough that an actor is still working when it is killed (600 rows once finished first)."""
    return _records(tmp_path_factory.mktemp("ray_long"), pang_lee_texts * 12)


def _by_key(table):
    return table.sort_by("key")


def test_ray_equals_local_record_for_record(local_ray, tiny_int8, records, tmp_path):
    from edgebert.batch.ray_engine import run_on_ray

    spec = dict(model=str(tiny_int8), input=str(records), fields=Fields("body", "key"), shard_size=SHARD,
                quiet=True)
    run_job(JobSpec(output=str(tmp_path / "local.parquet"), **spec))
    summary = run_on_ray(JobSpec(output=str(tmp_path / "ray.parquet"), **spec), actors=2)
    local, remote = pq.read_table(tmp_path / "local.parquet"), pq.read_table(tmp_path / "ray.parquet")
    assert summary["rejects"] == 1 and summary["rows"] == local.num_rows
    assert _by_key(remote).equals(_by_key(local))
    (reject,) = [json.loads(line) for f in sorted((tmp_path / "ray.parquet.rejects").iterdir())
                 for line in f.read_text().splitlines()]
    assert reject["key"] == 7 and "int, not a string" in reject["_reason"]


def test_killed_actor_is_retried_without_loss_or_duplicates(local_ray, tiny_int8, long_records, tmp_path):
    from edgebert.batch.ray_engine import run_on_ray

    spec = dict(model=str(tiny_int8), input=str(long_records), fields=Fields("body", "key"), shard_size=SHARD // 4,
                quiet=True)
    run_job(JobSpec(output=str(tmp_path / "local.parquet"), **spec))
    killed = []

    def kill_one_actor():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            for p in psutil.process_iter(["pid", "cmdline"]):
                if any("MapWorker" in part for part in (p.info["cmdline"] or [])) and _ours(p):
                    time.sleep(0.5)  # let it take some batches first
                    try:
                        os.kill(p.info["pid"], signal.SIGKILL)
                    except ProcessLookupError:  # it ended meanwhile: look for another
                        continue
                    killed.append(p.info["pid"])
                    return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one_actor)
    killer.start()
    run_on_ray(JobSpec(output=str(tmp_path / "ray.parquet"), **spec), actors=2)
    killer.join()
    assert killed, "no Ray actor process was found to kill"
    remote = pq.read_table(tmp_path / "ray.parquet")
    assert sorted(remote["key"].to_pylist()) == sorted(set(remote["key"].to_pylist()))  # none twice
    assert _by_key(remote).equals(_by_key(pq.read_table(tmp_path / "local.parquet")))  # none lost


def _ours(process) -> bool:
    try:
        return process.environ().get("EDGEBERT_RAY_TEST") == MARK
    except psutil.Error:
        return False


def test_ray_needs_ids(tiny_int8, records, tmp_path):
    from edgebert.batch.ray_engine import run_on_ray

    with pytest.raises(InputError, match="--id-field"):
        run_on_ray(JobSpec(str(tiny_int8), str(records), str(tmp_path / "x.parquet"), fields=Fields("body")))
