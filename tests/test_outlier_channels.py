"""Outlier channels end to end: calibration's choice, what the converter writes, both backends reading it,
and files that misstate them (docs/format.md, "Outlier channels")."""
from __future__ import annotations

import json

import numpy as np
import pytest

import edgebert
from edgebert import names
from edgebert.converters import calibrate
from edgebert.errors import InvalidModelFile
from edgebert.format import read_model, write_model

# Two backends over the same file: the Numba kernels add the float32 channels in the reference's order, but
# the int8 GEMM's dequant and the attention/LayerNorm kernels round differently from NumPy's
# (tests/runtime compare each kernel exactly); through two tiny layers that stays far below this.
BACKEND_ATOL = 2e-4


def _outlier_nodes(path):
    graph = read_model(path).json(names.GRAPH)
    return [(n["params"]["linear"], n["attrs"]["outliers"]) for n in graph["nodes"]
            if n["op"] == "linear" and "outliers" in n["attrs"]]


def test_choice_takes_the_widest_channels_that_stand_out():
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((500, 480)).astype(np.float32)
    xs[:, [7, 300, 41]] *= [50, 20, 8]
    assert calibrate.outlier_channels(xs, 16).tolist() == [7, 41, 300]
    assert calibrate.outlier_channels(xs, 2).tolist() == [7, 300]  # the limit keeps the widest
    assert calibrate.outlier_channels(xs, 0) is None
    assert calibrate.outlier_channels(rng.standard_normal((500, 480)).astype(np.float32), 16) is None  # none stand out
    wide = rng.standard_normal((500, 96)).astype(np.float32)
    wide[:, :10] *= 30
    assert len(calibrate.outlier_channels(wide, 16)) == 96 // calibrate.OUTLIER_SHARE  # one in 48 at most


def test_simulated_sqnr_sees_the_float32_channels():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 96)).astype(np.float32)
    x[:, 5] *= 60
    w = (0.05 * rng.standard_normal((40, 96))).astype(np.float32)
    assert calibrate.simulated_sqnr(x, w, None, np.array([5], np.int32)) > calibrate.simulated_sqnr(x, w, None) + 10


def test_converted_file_carries_them(tiny_int8, tiny_dir, tmp_path):
    """Every linear with the attr has both tensors; its int8 columns there are zero, the float32 columns
    are the source's own weight, and the calibration record names the same layers."""
    from edgebert.converters import convert

    found = _outlier_nodes(tiny_int8)
    assert found, "the tiny model's calibration picked no outlier channel: nothing below is exercised"
    fp32 = tmp_path / "f.edgebert"
    convert(tiny_dir, fp32, dtype="float32")
    f, src = read_model(tiny_int8), read_model(fp32)
    for prefix, k in found:
        idx = np.asarray(f.tensors[prefix + names.OUTLIERS])
        cols = np.asarray(f.tensors[prefix + names.OUTLIER_WEIGHT])
        q = np.asarray(f.tensors[prefix + names.WEIGHT])
        assert idx.shape == (k,) and idx.dtype == np.int32 and np.all(np.diff(idx) > 0)
        assert not q[:, idx].any()
        assert np.array_equal(cols, np.asarray(src.tensors[prefix + names.WEIGHT])[:, idx])
    cal = f.json(names.CALIBRATION)["outliers"]
    assert cal == {"limit": calibrate.DEFAULT_OUTLIERS, "layers": dict(found)}


def test_info_counts_them(tiny_int8):
    from edgebert.info import file_info, format_info

    found = _outlier_nodes(tiny_int8)
    line = next(x for x in format_info(file_info(tiny_int8), str(tiny_int8)) if x.startswith("outliers"))
    assert line.split()[1] == str(sum(k for _, k in found)) and f"in {len(found)} linear layers" in line


def test_outliers_off(tiny_dir, tmp_path):
    from edgebert.converters import convert

    out = tmp_path / "plain.edgebert"
    convert(tiny_dir, out, dtype="int8", outliers=0)
    assert _outlier_nodes(out) == []
    assert not any(n.endswith((names.OUTLIERS, names.OUTLIER_WEIGHT)) for n in read_model(out).tensors)


def test_numpy_and_numba_backends_agree(tiny_int8, pang_lee_texts):
    a = edgebert.load(tiny_int8, backend="numpy").embed(pang_lee_texts[:8])
    b = edgebert.load(tiny_int8, backend="numba").embed(pang_lee_texts[:8])
    assert np.abs(a - b).max() <= BACKEND_ATOL


def _rewrite(src, dst, drop=(), tensors=None, graph=None, calibration=None):
    f = read_model(src)
    t = {k: np.array(v) for k, v in f.tensors.items() if k not in drop}
    t.update(tensors or {})
    meta = {k: v for k, v in f.metadata.items()
            if k not in ("edgebert.format", "edgebert.version", "edgebert.payload_sha256")}
    if graph is not None:
        meta[names.GRAPH] = json.dumps(graph)
    if calibration is not None:
        meta[names.CALIBRATION] = json.dumps(calibration)
    write_model(dst, t, meta)
    return dst


def test_misstated_outliers_are_refused(tiny_int8, tmp_path):
    prefix, k = _outlier_nodes(tiny_int8)[0]
    f = read_model(tiny_int8)
    graph, cal = f.json(names.GRAPH), f.json(names.CALIBRATION)
    with pytest.raises(InvalidModelFile, match="outlier_weight"):
        edgebert.load(_rewrite(tiny_int8, tmp_path / "a.edgebert", drop=(prefix + names.OUTLIER_WEIGHT,)))
    no_attr = json.loads(json.dumps(graph))
    for n in no_attr["nodes"]:
        if n["op"] == "linear" and n["params"]["linear"] == prefix:
            del n["attrs"]["outliers"]
    with pytest.raises(InvalidModelFile, match="no outliers attr"):
        edgebert.load(_rewrite(tiny_int8, tmp_path / "b.edgebert", graph=no_attr))
    wrong = json.loads(json.dumps(cal))
    wrong["outliers"]["layers"][prefix] = k + 1
    with pytest.raises(InvalidModelFile, match="outliers layers"):
        edgebert.load(_rewrite(tiny_int8, tmp_path / "c.edgebert", calibration=wrong))
    idx = np.asarray(f.tensors[prefix + names.OUTLIERS]).copy()
    idx[-1] = 10**6  # past the input width
    with pytest.raises((InvalidModelFile, edgebert.errors.InputError), match="strictly increasing"):
        edgebert.load(_rewrite(tiny_int8, tmp_path / "d.edgebert", tensors={prefix + names.OUTLIERS: idx}))


@pytest.mark.parametrize("change, match", [
    ("unsorted", "strictly increasing channels"),
    ("other mask", "mask and their Gather name different channels"),
    ("no branch", "masks channels but has no outlier-channel branch"),
])
def test_hostile_onnx_outlier_branches_are_refused(tiny_int8, tmp_path, change, match):
    """Our export's outlier form read back with its parts contradicting each other: refused, nothing written."""
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    from edgebert.converters import convert
    from edgebert.errors import UnsupportedModel
    from edgebert.onnx_export import export_onnx

    prefix, k = next((p, k) for p, k in _outlier_nodes(tiny_int8) if k >= 1)
    path = tmp_path / "e" / "model.onnx"
    export_onnx(tiny_int8, path)
    proto = onnx.load(str(path))
    inits = {t.name: t for t in proto.graph.initializer}
    idx = numpy_helper.to_array(inits[prefix + names.OUTLIERS])
    mask = numpy_helper.to_array(inits[prefix + ".outlier_mask"]) if prefix + ".outlier_mask" in inits else None
    if mask is None:
        pytest.skip(f"{prefix} runs with higher-precision activations here (no quantizer mask)")
    if change == "unsorted":
        new = np.concatenate([idx, idx[:1]]) if k == 1 else idx[::-1].copy()
        cols = numpy_helper.to_array(inits[prefix + names.OUTLIER_WEIGHT])
        inits[prefix + names.OUTLIER_WEIGHT].CopyFrom(numpy_helper.from_array(
            np.concatenate([cols, cols[:1]]) if k == 1 else cols[::-1].copy(), prefix + names.OUTLIER_WEIGHT))
        inits[prefix + names.OUTLIERS].CopyFrom(numpy_helper.from_array(new, prefix + names.OUTLIERS))
    elif change == "other mask":
        other = mask.copy()
        other[idx] = 1
        other[(idx[0] + 1) % len(mask) if (idx[0] + 1) % len(mask) not in idx else (idx[-1] + 1) % len(mask)] = 0
        inits[prefix + ".outlier_mask"].CopyFrom(numpy_helper.from_array(other, prefix + ".outlier_mask"))
    else:  # the Gather picks one channel more than the weight columns have: not the outlier form
        inits[prefix + names.OUTLIERS].CopyFrom(numpy_helper.from_array(
            np.append(idx, np.int64(len(mask) - 1) if len(mask) - 1 not in idx else np.int64(0)), prefix + names.OUTLIERS))
    onnx.save_model(proto, str(path))
    with pytest.raises(UnsupportedModel, match=match):
        convert(path, tmp_path / "x.edgebert", dtype="int8")
    assert not (tmp_path / "x.edgebert").exists()
