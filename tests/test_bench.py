"""``edgebert bench``: the report's numbers are measured, on the sequence lengths it names."""
import json

import numpy as np
import pytest

from edgebert import bench, cli, load


def test_bench_reports_measured_numbers(tiny_int8, capsys):
    assert cli.main(["bench", str(tiny_int8), "--rounds", "2", "--repeat", "1", "--threads", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("latency_1x16_ms", "latency_1x128_ms", "throughput_texts_per_s", "peak_rss_mib", "load_s",
                "first_call_s"):
        assert report[key] > 0, key
    assert report["threads"] == 1 and report["kernel_path"] in report["summary"]
    assert f"1x128={report['latency_1x128_ms']:.2f}ms" in report["summary"]
    assert len(bench.sentences()) == 64


@pytest.mark.parametrize("tokens", [16, 128])
def test_latency_inputs_have_exactly_the_tokens(tiny_int8, tokens):
    model = load(tiny_int8, threads=1)
    ids, mask = bench._ids(model, tokens)
    assert ids.shape == mask.shape == (1, tokens)
    first, last = model.tokenize(["x"])[0][0][0], model.tokenize(["x"])[0][0][-1]
    assert ids[0, 0] == first and ids[0, -1] == last  # [CLS] ... [SEP], a real sequence
    assert model.run(ids, mask).shape == (1, tokens, model.dim)
    assert np.unique(ids).size > tokens // 4  # real words, not one id repeated


def test_bench_refuses_zero_rounds(tiny_int8, capsys):
    assert cli.main(["bench", str(tiny_int8), "--rounds", "0"]) != 0
    assert "--rounds" in capsys.readouterr().err
