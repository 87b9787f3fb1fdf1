"""Batch scoring: every input and output format, rejects, refusals, and kill-and-resume."""
from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import edgebert
from edgebert.batch import Fields, JobSpec, run_job
from edgebert.cli import main
from edgebert.errors import InputError

KILLS = 4  # SIGKILLs in the CI test (the 20-kill run is benchmarks/batch_resume.py)
SHARD = 16


@pytest.fixture(scope="module")
def texts(pang_lee_texts):
    return pang_lee_texts[:120]


@pytest.fixture(scope="module")
def expected(tiny_int8, texts):
    return edgebert.load(tiny_int8).embed(texts)


def _embeddings(path: Path) -> np.ndarray:
    return np.array(pq.read_table(path)["embedding"].to_pylist(), dtype=np.float32)


def test_txt_to_npy_and_jsonl(tiny_int8, texts, expected, tmp_path):
    (tmp_path / "in.txt").write_text("\n".join(texts), encoding="utf-8")
    for name in ("a.npy", "a.jsonl"):
        assert main(["embed", str(tiny_int8), "--input", str(tmp_path / "in.txt"), "--output",
                     str(tmp_path / name), "--shard-size", str(SHARD), "--quiet"]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), expected)
    rows = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rows] == list(range(1, len(texts) + 1))
    np.testing.assert_array_equal(np.array([r["embedding"] for r in rows], dtype=np.float32), expected)
    assert not list(tmp_path.glob("*.partial"))


def test_jsonl_csv_parquet_folder_with_ids_and_rejects(tiny_int8, texts, expected, tmp_path):
    good = [{"key": f"k{i}", "body": t} for i, t in enumerate(texts)]
    bad = [{"key": "no-body"}, {"key": "number", "body": 7}, {"key": "long", "body": "word " * 5000}]
    records = good[:50] + bad + good[50:]
    with open(tmp_path / "in.jsonl", "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
        f.write("{not json\n")
    with open(tmp_path / "in.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, ["key", "body"])
        w.writeheader()
        w.writerows(good)
    pq.write_table(pa.table({"key": [r["key"] for r in good], "body": [r["body"] for r in good]}),
                   tmp_path / "in.parquet")
    folder = tmp_path / "parts"
    folder.mkdir()
    for part, chunk in enumerate((good[:70], good[70:])):
        (folder / f"{part}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in chunk))
    for src in ("in.jsonl", "in.csv", "in.parquet", "parts"):
        out = tmp_path / f"{src}.out.parquet"
        summary = run_job(JobSpec(str(tiny_int8), str(tmp_path / src), str(out), fields=Fields("body", "key"),
                                  truncate=False, shard_size=SHARD, quiet=True))
        table = pq.read_table(out)
        assert table.column_names == ["key", "embedding"]
        assert table["key"].to_pylist() == [r["key"] for r in good], src
        np.testing.assert_array_equal(_embeddings(out), expected)
        assert summary["rows"] == len(good)
    rejects = [json.loads(line) for line in (tmp_path / "in.jsonl.out.rejects.jsonl").read_text().splitlines()]
    assert [(r["record"], r["id"]) for r in rejects] == [(51, "no-body"), (52, "number"), (53, "long"),
                                                          (len(records) + 1, len(records) + 1)]
    reasons = [r["reason"] for r in rejects]
    assert "no field 'body'" in reasons[0] and "int, not a string" in reasons[1]
    assert "more than the model's maximum" in reasons[2] and "not JSON" in reasons[3]


def test_bad_utf8_line_is_rejected_not_fatal(tiny_int8, tmp_path, capsys):
    (tmp_path / "in.txt").write_bytes(b"ok\nbad \xff here\nfine too\n")
    assert main(["embed", str(tiny_int8), "--input", str(tmp_path / "in.txt"), "--output",
                 str(tmp_path / "a.npy"), "--quiet"]) == 0
    assert np.load(tmp_path / "a.npy").shape[0] == 2
    (reject,) = [json.loads(x) for x in (tmp_path / "a.rejects.jsonl").read_text().splitlines()]
    assert reject["id"] == 2 and "line 2 is not valid UTF-8" in reject["reason"]
    assert "1 records rejected" in capsys.readouterr().err


@pytest.mark.parametrize("name, content, message", [
    ("x.jsonl", b"\x00\x01binary", "binary data"),
    ("x.jsonl", b"just words\n", "not a JSON-lines file"),
    ("x.parquet", b'{"a": 1}\n', "not a Parquet file"),
    ("x.csv", b"a,b\n1,2\n", "no column 'body'"),
    ("x.xml", b"<a/>", "unknown input format .xml"),
])
def test_wrong_file_refused_before_any_work(tiny_int8, tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    out = tmp_path / "out.parquet"
    with pytest.raises(InputError, match=message):
        run_job(JobSpec(str(tiny_int8), str(tmp_path / name), str(out), fields=Fields("body")))
    assert not out.exists() and not (tmp_path / "out.parquet.partial").exists()


def _cli(model, src, out, *extra):
    return [sys.executable, "-m", "edgebert.cli", "embed", str(model), "--input", str(src), "--output", str(out),
            "--text-field", "body", "--id-field", "key", "--shard-size", str(SHARD), "--quiet", *extra]


def test_killed_and_resumed_output_equals_uninterrupted(tiny_int8, texts, tmp_path):
    src = tmp_path / "in.jsonl"
    records = texts * 30  # long enough to outlast every kill (x10 once finished between a check and a kill)
    src.write_text("".join(json.dumps({"key": i, "body": t}) + "\n" for i, t in enumerate(records)))
    env = {**os.environ, "EDGEBERT_NUM_THREADS": "1"}
    subprocess.run(_cli(tiny_int8, src, tmp_path / "whole.parquet"), check=True, env=env)
    out, manifest = tmp_path / "resumed.parquet", tmp_path / "resumed.parquet.partial" / "manifest.json"
    rng, kills, committed = random.Random(0), 0, []
    while kills < KILLS:
        proc = subprocess.Popen(_cli(tiny_int8, src, out), env=env)
        start = json.loads(manifest.read_text())["records"] if manifest.exists() else 0
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:  # wait for one more shard, then a bit
            if manifest.exists() and json.loads(manifest.read_text())["records"] > start:
                time.sleep(rng.uniform(0, 0.3))
                break
            time.sleep(0.02)
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        committed.append(json.loads(manifest.read_text())["records"])
    assert kills == KILLS, "the run finished before every kill: make the input longer"
    assert committed == sorted(committed) and committed[0] > 0
    subprocess.run(_cli(tiny_int8, src, out), check=True, env=env)
    whole, resumed = pq.read_table(tmp_path / "whole.parquet"), pq.read_table(out)
    assert resumed["key"].to_pylist() == list(range(len(records)))
    assert resumed.equals(whole)
    assert not manifest.parent.exists()


def test_interrupt_commits_and_changed_input_is_refused(tiny_int8, texts, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"key": i, "body": t}) + "\n" for i, t in enumerate(texts * 3)))
    out = tmp_path / "out.parquet"
    manifest = tmp_path / "out.parquet.partial" / "manifest.json"
    proc = subprocess.Popen(_cli(tiny_int8, src, out), stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not manifest.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Run the same command again to resume" in err
    assert json.loads(manifest.read_text())["records"] > 0
    with open(src, "a") as f:
        f.write(json.dumps({"key": -1, "body": "one more"}) + "\n")
    with pytest.raises(InputError, match="unfinished job with another input.*--restart"):
        run_job(JobSpec(str(tiny_int8), str(src), str(out), fields=Fields("body", "key"), quiet=True))
    run_job(JobSpec(str(tiny_int8), str(src), str(out), fields=Fields("body", "key"), quiet=True, restart=True))
    assert pq.read_table(out).num_rows == len(texts) * 3 + 1


def test_classify_to_parquet(tiny_head, tmp_path):
    path = tiny_head("BertForSequenceClassification", "int8", num_labels=3)
    texts = ["a fine film", "dull and long", "what a ride"]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"t": t, "id": i}) + "\n" for i, t in enumerate(texts)))
    assert main(["classify", str(path), "--input", str(tmp_path / "in.jsonl"), "--output",
                 str(tmp_path / "out.parquet"), "--text-field", "t", "--id-field", "id", "--top-k", "2",
                 "--quiet"]) == 0
    table = pq.read_table(tmp_path / "out.parquet")
    assert table["id"].to_pylist() == [0, 1, 2]
    want = edgebert.pipeline("text-classification", model=path)(texts, top_k=2)
    assert [json.loads(r) for r in table["result"].to_pylist()] == json.loads(json.dumps(want))
