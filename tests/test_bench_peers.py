"""The benchmark's OpenVINO / CTranslate2 peers and its roofline line, cheaply: the op count against a
naive enumeration of the matmuls, the report's roofline table on made-up results, the calibration feeds;
the engine classes on tiny models where openvino / ctranslate2 are installed (skipped otherwise)."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # benchmarks/ is not installed; plain `pytest` lacks the cwd
    sys.path.insert(0, str(ROOT))

from benchmarks import engines, export_peers, report, roofline  # noqa: E402

MINILM = {"hidden": 384, "intermediate": 1536, "layers": 6, "heads": 12}
# CTranslate2 int8 vs transformers fp32 per token on a tiny random BERT (int8 weights and activations):
# measured worst cosine 0.99997 (max abs error 0.022); with the token types dropped (all ones) 0.57.
CT2_MIN_COS = 0.999


def naive_ops(dims, batch, tokens):
    """Every matmul of the encoder listed as (M, K, N), 2*M*K*N each: per layer the six linears on
    all B*T rows, and per sequence and head Q.K^T (T x d x T) and P.V (T x T x d)."""
    H, inter, heads = dims["hidden"], dims["intermediate"], dims["heads"]
    d = H // heads
    M = batch * tokens
    mats = []
    for _ in range(dims["layers"]):
        mats += [(M, H, H)] * 4 + [(M, H, inter), (M, inter, H)]
        mats += [(tokens, d, tokens), (tokens, tokens, d)] * (batch * heads)
    return sum(2 * m * k * n for m, k, n in mats)


@pytest.mark.parametrize("batch,tokens", [(1, 16), (1, 128), (1, 512), (32, 128), (3, 7)])
def test_gemm_ops_match_a_naive_count_of_every_matmul(batch, tokens):
    ops = roofline.gemm_ops(MINILM, batch, tokens)
    assert ops["total"] == naive_ops(MINILM, batch, tokens)
    assert ops["total"] == ops["linears"] + ops["attention"]


def test_gemm_ops_refuse_an_empty_shape():
    with pytest.raises(ValueError, match="batch and tokens must be positive, got 0 x 16"):
        roofline.gemm_ops(MINILM, 0, 16)


def test_model_dims_read_from_config(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(
        {"hidden_size": 384, "intermediate_size": 1536, "num_hidden_layers": 6, "num_attention_heads": 12}))
    assert roofline.model_dims(tmp_path) == MINILM


def fake_results():
    """Results as run.py writes them, with made-up numbers, two int8 engines and one float engine."""
    lat = {"edgebert": 100.0, "openvino_int8": 50.0, "openvino_fp32": 80.0}
    labels = {"edgebert": "edgebert int8", "openvino_int8": "OpenVINO int8", "openvino_fp32": "OpenVINO fp32"}
    return {
        "machine": {"date": "2026-01-01", "cpu": {"model": "test cpu", "usable_cores": 2, "flags": ["avx2"]},
                    "versions": {"python": "3", "numpy": "2", "numba": "0", "onnxruntime": "1", "torch": "2",
                                 "transformers": "4", "openvino": "2026.4.1"},
                    "load_average_at_start": [1.0], "load_average_at_end": [2.0]},
        "mode": "quick", "plan": {"settle_s": 0.02}, "isolation": "process per engine",
        "ort_models": {"exporter": "x", "fused_operators": {}},
        "peer_models": {"openvino_int8": "nncf.quantize recipe", "openvino_fp32": "convert_model"},
        "engines": {n: {"label": labels[n], "file_bytes": 1e6, "settings": {}} for n in lat},
        "latency": [{"threads": t, "batch": 32, "tokens": 128,
                     "engines": {n: {"median_ms": ms * t, "p90_ms": ms * t, "n": 3} for n, ms in lat.items()}}
                    for t in (1, 2)],
        "throughput": [], "model_dims": MINILM,
        "gemm_peak": {"1": {"tops": 2.0, "impl": "ORT MatMulInteger", "shape": "4096x384x1536",
                            "other": [{"impl": "edgebert qlinear (avx2)", "tops": 0.5}]}},
    }


def test_achieved_tops_and_share_of_peak_for_int8_engines_only():
    r = fake_results()
    points = roofline.achieved(r, MINILM, r["gemm_peak"])
    assert {p["engine"] for p in points} == {"edgebert", "openvino_int8"}  # weights-only / fp32 left out
    ops = naive_ops(MINILM, 32, 128)
    one = {p["engine"]: p for p in points if p["threads"] == 1}
    assert one["openvino_int8"]["tops"] == pytest.approx(ops / 0.050 / 1e12)
    assert one["edgebert"]["of_peak"] == pytest.approx(ops / 0.100 / 1e12 / 2.0)
    assert all(p["of_peak"] is None for p in points if p["threads"] == 2)  # no peak measured at 2 threads


def test_report_carries_the_peers_and_the_roofline_table():
    r = fake_results()
    md = report.markdown(r)
    ops = naive_ops(MINILM, 32, 128)
    assert "openvino 2026.4.1" in md and "- OpenVINO int8: nncf.quantize recipe" in md
    assert "## Roofline" in md and "2.000 TOPS, ORT MatMulInteger at 4096x384x1536; edgebert qlinear (avx2) 0.500" in md
    row = next(line for line in md.splitlines() if line.startswith("| 1 | 32 x 128 |") and "TOPS" not in line
               and "%" in line)
    ov = ops / 0.050 / 1e12
    assert f"{ov:.3f} ({ov / 2 * 100:.0f} %)" in row
    del r["gemm_peak"]
    assert "## Roofline" not in report.markdown(r)


def test_report_chart_has_a_roofline_panel(tmp_path):
    pytest.importorskip("matplotlib")
    r = fake_results()
    r["latency"][0]["engines"]["ort_int8"] = {"median_ms": 60.0, "p90_ms": 60.0, "n": 3}
    r["latency"][1]["engines"]["ort_int8"] = {"median_ms": 30.0, "p90_ms": 30.0, "n": 3}
    r["engines"]["ort_int8"] = {"label": "ORT int8", "file_bytes": 1e6, "settings": {}}
    report.chart(r, tmp_path / "peers.png")
    assert (tmp_path / "peers.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_peers_are_registered_with_their_model_files():
    assert set(export_peers.FILES) <= set(engines.ENGINES)
    for key in export_peers.FILES:
        assert engines.ENGINES[key].key == key  # the class reads paths[key], the file prepare built


def test_calibration_feeds_are_one_real_sentence_each(minilm_dir):
    texts = export_peers.calibration_texts()
    assert len(texts) == export_peers.CALIBRATION_SENTENCES
    feeds = export_peers.calibration_inputs(minilm_dir, texts[:5])
    assert [f["input_ids"].shape[0] for f in feeds] == [1] * 5
    for f in feeds:
        assert f["input_ids"].dtype == np.int64 and f["input_ids"].shape == f["attention_mask"].shape
        assert f["attention_mask"].all() and f["input_ids"][0, 0] == 101 and f["input_ids"][0, -1] == 102


def test_missing_peer_packages_are_named(monkeypatch, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    absent = ("openvino", "ctranslate2")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "nncf" else
                        None if name in absent else real(name, *a))
    with pytest.raises(SystemExit, match=r"need openvino, ctranslate2, not installed here: pip install -e '\.\[bench\]'"):
        export_peers.build(tmp_path, tmp_path / "peers")
    assert not (tmp_path / "peers").exists()  # nothing removed or written before the check


def _text_folder(tmp_path, minilm_dir):
    for name in ("tokenizer.json", "sentence_bert_config.json"):
        shutil.copy(minilm_dir / name, tmp_path / name)
    return tmp_path


def test_openvino_engine_feeds_and_reads_the_model(tmp_path, minilm_dir):
    ov = pytest.importorskip("openvino")
    from openvino import opset13 as ops

    # A stand-in model with the export's inputs: hidden = table[input_ids] * mask + token_type_ids.
    table = np.random.default_rng(0).normal(size=(30522, 8)).astype(np.float32)
    params = [ops.parameter([-1, -1], ov.Type.i64, name=n) for n in ("input_ids", "attention_mask", "token_type_ids")]
    ids, mask, types = params
    gathered = ops.gather(ops.constant(table), ids, ops.constant(np.int64(0)))
    extra = ops.unsqueeze(ops.convert(ops.add(ops.multiply(mask, ops.constant(np.int64(0))), types), ov.Type.f32),
                          ops.constant(np.int64(-1)))
    ov.save_model(ov.Model([ops.add(gathered, extra)], params), tmp_path / "m.xml", compress_to_fp16=False)
    folder = _text_folder(tmp_path, minilm_dir)
    engine = engines.ENGINES["openvino_fp32"]({"model_dir": str(folder), "openvino_fp32": str(tmp_path / "m.xml")}, 1)
    x = np.array([[101, 2023, 102]], dtype=np.int64)
    out = engine.run(x, np.ones_like(x), np.ones_like(x))
    np.testing.assert_array_equal(out, table[x] + 1.0)
    settings = engine.describe()["settings"]
    assert settings["INFERENCE_PRECISION_HINT"] == "float32" and settings["NUM_STREAMS"] == "1"
    v = engine.embed(["a sentence", "another, longer sentence here"])
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-6)


def test_ctranslate2_engine_matches_transformers_on_a_tiny_bert(tmp_path, minilm_dir):
    pytest.importorskip("ctranslate2")
    torch = pytest.importorskip("torch")
    from conftest import make_tiny_bert

    folder = make_tiny_bert(tmp_path / "tiny", minilm_dir)
    _text_folder(folder, minilm_dir)
    export_peers.build_ctranslate2(folder, tmp_path / "ct2")
    engine = engines.ENGINES["ctranslate2_int8"]({"model_dir": str(folder),
                                                  "ctranslate2_int8": str(tmp_path / "ct2" / "model.bin")}, 1)
    from transformers import AutoModel

    model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
    ids = np.array([[101, 2023, 2003, 1037, 102], [101, 7592, 102, 0, 0]], dtype=np.int64)
    mask = (ids != 0).astype(np.int64)
    got = engine.run(ids, mask, np.zeros_like(ids))
    with torch.inference_mode():
        want = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).last_hidden_state.numpy()
    for row, n in enumerate(mask.sum(axis=1)):  # padded positions are the engine's own business
        a, b = got[row, :n], want[row, :n]
        cos = (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        assert cos.min() >= CT2_MIN_COS, (row, cos)
