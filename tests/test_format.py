"""Tests for edgebert.format: round trip, safetensors interop, malformed files, fuzzing, graphs."""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgebert.errors import InvalidModelFile
from edgebert.format import (
    MAX_TENSORS,
    OPS,
    read_header,
    read_model,
    validate_graph,
    write_model,
)

DATA_DIR = Path(__file__).parent / "data"
CORPUS_DIR = DATA_DIR / "malformed"


def _load_corpus_builder():
    """tests/ is not a package: load the corpus script by path."""
    spec = importlib.util.spec_from_file_location("make_malformed", DATA_DIR / "make_malformed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_malformed = _load_corpus_builder()


def sample_tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "z.f32": rng.standard_normal((3, 5)).astype(np.float32),
        "a.i8": rng.integers(-127, 128, size=(7,), dtype=np.int8),
        "m.i32": np.arange(24, dtype=np.int32).reshape(2, 3, 4),
        "b.i8": rng.integers(-127, 128, size=(1, 2, 3, 5), dtype=np.int8),
        "c.f32": np.array([1.5], dtype=np.float32),
    }


def sample_metadata() -> dict[str, object]:
    return {
        "edgebert.architecture": "bert",
        "edgebert.config": {"hidden_size": 4, "layer_norm_eps": 1e-12, "hidden_act": "gelu"},
        "edgebert.pooling": {"normalize": True, "mode": "mean"},
        "edgebert.tokenizer": '{"not": "parsed"} ünïcödé',
        "count": 3,
        "list": [1, 2.5, None],
    }


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    path = tmp_path / "m.edgebert"
    write_model(path, sample_tensors(), sample_metadata())
    return path


# ----------------------------------------------------------------- round trip


@pytest.mark.parametrize("use_mmap", [True, False])
def test_round_trip_every_dtype(model_path: Path, use_mmap: bool) -> None:
    model = read_model(model_path, mmap=use_mmap)
    expected = sample_tensors()
    assert set(model.tensors) == set(expected)
    for name, arr in expected.items():
        got = model.tensors[name]
        assert got.dtype == arr.dtype and got.shape == arr.shape
        np.testing.assert_array_equal(got, arr)
        assert not got.flags.writeable
    assert model.path == os.fspath(model_path)


@pytest.mark.parametrize("use_mmap", [True, False])
def test_release_pages_keeps_tensors_readable(model_path: Path, use_mmap: bool) -> None:
    """Dropping the map's pages is only advice: the next read brings the same bytes back."""
    model = read_model(model_path, mmap=use_mmap)
    model.release_pages()
    for name, arr in sample_tensors().items():
        np.testing.assert_array_equal(model.tensors[name], arr)


def test_metadata_values(model_path: Path) -> None:
    model = read_model(model_path)
    meta = model.metadata
    assert all(isinstance(v, str) for v in meta.values())
    assert meta["edgebert.format"] == "edgebert" and meta["edgebert.version"] == "1"
    assert meta["edgebert.architecture"] == "bert"
    assert meta["edgebert.tokenizer"] == sample_metadata()["edgebert.tokenizer"]
    assert meta["edgebert.pooling"] == '{"mode": "mean", "normalize": true}'  # sort_keys
    assert model.json("edgebert.config") == sample_metadata()["edgebert.config"]
    assert model.json("count") == 3 and model.json("list") == [1, 2.5, None]
    payload = model_path.read_bytes()[read_header(model_path).data_start :]
    assert meta["edgebert.payload_sha256"] == hashlib.sha256(payload).hexdigest()


def test_json_helper_refuses_missing_and_invalid(model_path: Path) -> None:
    model = read_model(model_path)
    with pytest.raises(InvalidModelFile, match="'edgebert.graph' is missing"):
        model.json("edgebert.graph")
    with pytest.raises(InvalidModelFile, match="'edgebert.tokenizer' is not valid JSON"):
        model.json("edgebert.tokenizer")


def test_order_and_alignment(model_path: Path) -> None:
    header = read_header(model_path)
    assert header.data_start % 64 == 0
    by_offset = sorted(header.tensors, key=lambda n: header.tensors[n].begin)
    itemsize = {"F32": 4, "I32": 4, "I8": 1}
    keys = [(-itemsize[header.tensors[n].dtype], n) for n in by_offset]
    assert keys == sorted(keys), "itemsize descending, then name"
    assert list(header.tensors) == by_offset, "header lists tensors in data order"
    model = read_model(model_path, mmap=True)
    for name, info in header.tensors.items():
        assert (header.data_start + info.begin) % itemsize[info.dtype] == 0
        arr = model.tensors[name]
        assert not arr.flags.owndata, f"{name} should be a view of the map, not a copy"
        assert arr.ctypes.data % arr.dtype.itemsize == 0


def test_writer_is_deterministic_and_little_endian(tmp_path: Path) -> None:
    tensors = sample_tensors()
    big = {name: arr.astype(arr.dtype.newbyteorder(">")) for name, arr in tensors.items()}
    write_model(tmp_path / "a.edgebert", tensors, sample_metadata())
    write_model(tmp_path / "b.edgebert", big, dict(reversed(sample_metadata().items())))
    assert (tmp_path / "a.edgebert").read_bytes() == (tmp_path / "b.edgebert").read_bytes()


def test_writer_accepts_its_own_metadata_back(model_path: Path, tmp_path: Path) -> None:
    model = read_model(model_path)
    write_model(tmp_path / "again.edgebert", dict(model.tensors), model.metadata)
    assert (tmp_path / "again.edgebert").read_bytes() == model_path.read_bytes()


def test_empty_model(tmp_path: Path) -> None:
    write_model(tmp_path / "e.edgebert", {}, {})
    assert read_model(tmp_path / "e.edgebert").tensors == {}
    assert read_model(tmp_path / "e.edgebert", mmap=False).tensors == {}


@pytest.mark.parametrize(
    "tensors, message",
    [
        ({"w64": np.zeros(2, np.float64)}, "'w64'"),
        ({"w16": np.zeros(2, np.float16)}, "'w16'"),
        ({"wb": np.zeros(2, bool)}, "'wb'"),
        ({"wi64": np.zeros(2, np.int64)}, "'wi64'"),
        ({"scalar": np.float32(1.0)}, "'scalar'"),
        ({"zero": np.zeros((0, 3), np.float32)}, "'zero'"),
        ({"rank5": np.zeros((1,) * 5, np.float32)}, "'rank5'"),
        ({"": np.zeros(2, np.float32)}, "tensor name"),
        ({"n" * 257: np.zeros(2, np.float32)}, "tensor name"),
    ],
)
def test_writer_refuses_what_readers_refuse(tmp_path: Path, tensors, message) -> None:
    with pytest.raises(ValueError, match=message):
        write_model(tmp_path / "bad.edgebert", tensors, {})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "metadata, message",
    [
        ({"edgebert.version": "2"}, "edgebert.version"),
        ({"edgebert.format": "gguf"}, "edgebert.format"),
        ({"x": float("nan")}, "'x'"),
        ({"x": object()}, "'x'"),
    ],
)
def test_writer_refuses_bad_metadata(tmp_path: Path, metadata, message) -> None:
    with pytest.raises(ValueError, match=message):
        write_model(tmp_path / "bad.edgebert", {"w": np.zeros(2, np.float32)}, metadata)


def test_atomic_write_keeps_old_file_on_failure(model_path: Path, monkeypatch) -> None:
    before = model_path.read_bytes()

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_model(model_path, {"w": np.zeros(3, np.float32)}, {})
    assert model_path.read_bytes() == before
    assert [p.name for p in model_path.parent.iterdir()] == [model_path.name], "temp file cleaned up"


def test_overwrite_leaves_no_temp_files(model_path: Path) -> None:
    write_model(model_path, {"w": np.ones(3, np.float32)}, {})
    assert [p.name for p in model_path.parent.iterdir()] == [model_path.name]
    np.testing.assert_array_equal(read_model(model_path).tensors["w"], np.ones(3, np.float32))


# --------------------------------------------------------- safetensors interop


def test_safetensors_reads_our_file(model_path: Path) -> None:
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    from safetensors import safe_open

    loaded = safetensors_numpy.load_file(str(model_path))
    ours = read_model(model_path)
    assert set(loaded) == set(ours.tensors)
    for name, arr in loaded.items():
        assert arr.dtype == ours.tensors[name].dtype
        np.testing.assert_array_equal(arr, ours.tensors[name])
    with safe_open(str(model_path), "np") as f:
        assert f.metadata() == ours.metadata
        assert set(f.keys()) == set(ours.tensors)


def test_we_read_a_file_written_by_safetensors(tmp_path: Path) -> None:
    """Any valid safetensors layout (8-byte padding, its own order) with our metadata loads."""
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    path = tmp_path / "st.edgebert"
    tensors = sample_tensors()
    meta = {"edgebert.format": "edgebert", "edgebert.version": "1", "edgebert.payload_sha256": "0" * 64}
    safetensors_numpy.save_file(tensors, str(path), metadata=meta)
    header_len = int.from_bytes(path.read_bytes()[:8], "little")
    meta["edgebert.payload_sha256"] = hashlib.sha256(path.read_bytes()[8 + header_len :]).hexdigest()
    safetensors_numpy.save_file(tensors, str(path), metadata=meta)  # same layout, real checksum
    for use_mmap in (True, False):
        model = read_model(path, mmap=use_mmap)
        for name, arr in tensors.items():
            np.testing.assert_array_equal(model.tensors[name], arr)


# ----------------------------------------------------------- malformed corpus

# case -> a substring the refusal must contain (what was wrong, with the numbers).
EXPECTED = {
    "empty": "file is too small (0 bytes",
    "seven_bytes": "file is too small (7 bytes",
    "header_len_zero": "header length 0 out of range",
    "truncated_header": "extends past the end of the file",
    "truncated_data": "tensor data is truncated: header needs 28 bytes, file has 24",
    "header_len_huge": "header length 18446744073709551615 out of range",
    "header_len_past_file": "extends past the end of the file",
    "bitflip_payload": "payload is corrupted",
    "bitflip_header_json": "header is not valid JSON",
    "header_not_object": "header is not a JSON object",
    "deep_nesting": "header is not",
    "nan_in_header": "NaN",
    "non_utf8_header": "header is not valid UTF-8",
    "no_metadata": "no __metadata__ (not an edgebert file)",
    "metadata_not_string": "metadata value of 'edgebert.config' is not a string",
    "wrong_magic": "not an edgebert file",
    "missing_version": "missing edgebert.version (supported: 1)",
    "unknown_version": "unsupported edgebert.version '999' (this reader supports: 1)",
    "missing_checksum": "missing edgebert.payload_sha256",
    "checksum_not_hex": "is not 64 lowercase hex digits",
    "entry_not_object": "tensor 'q': entry is not a JSON object",
    "entry_unknown_key": "tensor 'q': entry keys",
    "dtype_f16": "tensor 'w': unsupported dtype 'F16'",
    "dtype_f64": "tensor 'w': unsupported dtype 'F64'",
    "dtype_bool": "tensor 'q': unsupported dtype 'BOOL'",
    "shape_not_ints": "shape [2.0, 3.0] is not a list of integers",
    "shape_bool": "is not a list of integers",
    "rank0": "rank 0 out of range",
    "rank5": "rank 5 out of range",
    "zero_dim": "dimension 0 out of range",
    "negative_dim": "dimension -2 out of range",
    "huge_dim": "dimension 2147483648 out of range",
    "huge_numel": "span 4 bytes (does not match)",
    "lying_shape": "shape [100, 3] x F32 is 1200 bytes but data_offsets [0, 24] span 24 bytes",
    "offsets_not_ints": "data_offsets [24.0, 28.0] is not two integers",
    "offsets_three": "is not two integers",
    "offsets_reversed": "data_offsets [28, 24] are not 0 <= begin <= end",
    "overlapping_offsets": "tensor 'q' at [20, 24] overlaps tensor 'w'",
    "gap_in_offsets": "gap of 2 bytes before tensor 'q'",
    "trailing_bytes": "4 trailing bytes after the last tensor",
    "duplicate_names": "duplicate key 'w'",
    "empty_name": "tensor '': name must be 1 to 256 bytes",
    "name_too_long": "name must be 1 to 256 bytes",
    "lone_surrogate_name": "name must be 1 to 256 bytes",
}
CHECKSUM_ONLY = {"bitflip_payload", "missing_checksum", "checksum_not_hex"}


def test_every_case_has_an_expectation() -> None:
    assert set(EXPECTED) == set(make_malformed.CASES)


def test_committed_corpus_is_current() -> None:
    """The committed files are exactly what the script builds (rerun it after changing CASES)."""
    files = {p.stem for p in CORPUS_DIR.glob("*.edgebert")}
    assert files == set(make_malformed.CASES)
    for name, build in make_malformed.CASES.items():
        blob = (CORPUS_DIR / f"{name}.edgebert").read_bytes()
        assert blob == build(), name
        assert len(blob) < 4096


def test_valid_base_of_corpus_loads(tmp_path: Path) -> None:
    path = tmp_path / "valid.edgebert"
    path.write_bytes(make_malformed.VALID)
    model = read_model(path)
    np.testing.assert_array_equal(model.tensors["w"], np.arange(6, dtype=np.float32).reshape(2, 3))
    np.testing.assert_array_equal(model.tensors["q"], np.array([1, 2, -1, -127], np.int8))


@pytest.mark.parametrize("use_mmap", [True, False])
@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_committed_corpus_refused(case: str, use_mmap: bool) -> None:
    path = CORPUS_DIR / f"{case}.edgebert"
    with pytest.raises(InvalidModelFile) as info:
        read_model(path, mmap=use_mmap)
    assert EXPECTED[case] in str(info.value)
    assert str(path) in str(info.value), "the message names the file"


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_generated_corpus_refused(tmp_path: Path, case: str) -> None:
    path = tmp_path / f"{case}.edgebert"
    path.write_bytes(make_malformed.CASES[case]())
    if case in CHECKSUM_ONLY:
        read_header(path)  # structurally fine: only the payload check refuses it
        read_model(path, verify_checksum=False)
    else:
        with pytest.raises(InvalidModelFile) as info:
            read_header(path)
        assert EXPECTED[case] in str(info.value)
    with pytest.raises(InvalidModelFile) as info:
        read_model(path)
    assert EXPECTED[case] in str(info.value)


def test_too_many_tensors(tmp_path: Path) -> None:
    count = MAX_TENSORS + 1
    entries = {f"t{i}": {"dtype": "I8", "shape": [1], "data_offsets": [i, i + 1]} for i in range(count)}
    data = bytes(count)
    path = tmp_path / "many.edgebert"
    path.write_bytes(make_malformed.file_with(make_malformed.metadata(data), entries, data))
    with pytest.raises(InvalidModelFile, match=f"{count} tensors, more than the limit {MAX_TENSORS}"):
        read_model(path)


def test_writer_refuses_too_many_tensors(tmp_path: Path) -> None:
    tensors = {f"t{i}": np.zeros(1, np.int8) for i in range(MAX_TENSORS + 1)}
    with pytest.raises(ValueError, match="more than the limit"):
        write_model(tmp_path / "many.edgebert", tensors, {})


def test_missing_file_is_an_os_error(tmp_path: Path) -> None:
    """Absent is not malformed: callers can tell 'not found' from 'corrupt'."""
    with pytest.raises(FileNotFoundError):
        read_model(tmp_path / "absent.edgebert")


# ----------------------------------------------------------------------- fuzz


@pytest.fixture(scope="module")
def fuzz_dir():
    with tempfile.TemporaryDirectory() as folder:
        base = os.path.join(folder, "base.edgebert")
        write_model(
            base,
            {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "i": np.arange(2, dtype=np.int32), "q": np.ones(5, np.int8)},
            {"edgebert.config": {"hidden_size": 3}},
        )
        yield folder, Path(base).read_bytes()


MUTATION = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 2**16), st.integers(0, 7)),
    st.tuples(st.just("set"), st.integers(0, 2**16), st.integers(0, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 2**16)),
    st.tuples(st.just("insert"), st.integers(0, 2**16), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), st.integers(0, 2**16), st.integers(1, 16)),
)


def mutate(blob: bytes, mutations) -> bytes:
    out = bytearray(blob)
    for kind, index, *rest in mutations:
        at = index % (len(out) + 1)
        if kind == "flip" and at < len(out):
            out[at] ^= 1 << rest[0]
        elif kind == "set" and at < len(out):
            out[at] = rest[0]
        elif kind == "truncate":
            del out[at:]
        elif kind == "insert":
            out[at:at] = rest[0]
        elif kind == "delete":
            del out[at : at + rest[0]]
    return bytes(out)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutations=st.lists(MUTATION, min_size=1, max_size=4))
def test_fuzz_mutations_refused_or_loaded(fuzz_dir, mutations) -> None:
    """A mutated file loads or raises InvalidModelFile: never another exception, never a crash."""
    folder, base = fuzz_dir
    path = os.path.join(folder, "mutated.edgebert")
    with open(path, "wb") as f:
        f.write(mutate(base, mutations))
    for kwargs in ({}, {"verify_checksum": False}, {"verify_checksum": False, "mmap": False}):
        try:
            model = read_model(path, **kwargs)
        except InvalidModelFile:
            continue
        for arr in model.tensors.values():
            arr.sum()  # touch every byte of every tensor
    try:
        read_header(path)
    except InvalidModelFile:
        pass


JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)
DIM = st.integers(-2, 4) | st.sampled_from([0, 2**31 - 1, 2**31, 2**63, 2**64 + 1])


@st.composite
def headers(draw):
    """Mostly consistent layouts, then one field replaced by anything JSON can hold."""
    entries, offset = {}, 0
    for name in draw(st.lists(st.text(max_size=6), max_size=4, unique=True)):
        dtype = draw(st.sampled_from(["F32", "I32", "I8"]))
        shape = draw(st.lists(st.integers(1, 3), min_size=1, max_size=4))
        size = int(np.prod(shape)) * {"F32": 4, "I32": 4, "I8": 1}[dtype]
        entries[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    if entries and draw(st.booleans()):
        name = draw(st.sampled_from(sorted(entries)))
        field = draw(st.sampled_from(["dtype", "shape", "data_offsets", "entry"]))
        value = draw(
            {
                "dtype": st.sampled_from(["F16", "F64", "BOOL", "i8", ""]) | JSON_VALUE,
                "shape": st.lists(DIM, max_size=5) | JSON_VALUE,
                "data_offsets": st.lists(st.integers(-1, 80), max_size=3) | JSON_VALUE,
                "entry": JSON_VALUE,
            }[field]
        )
        if field == "entry":
            entries[name] = value
        else:
            entries[name][field] = value
    data = bytes(offset + draw(st.sampled_from([0, 0, 0, 1, -1]))) if offset else bytes(draw(st.integers(0, 2)))
    return entries, data


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=headers())
def test_fuzz_header_fields_refused_or_loaded(fuzz_dir, header) -> None:
    """Hostile values in every header field: refused cleanly, or loaded with honest sizes."""
    folder, _ = fuzz_dir
    entries, data = header
    path = os.path.join(folder, "fields.edgebert")
    with open(path, "wb") as f:
        f.write(make_malformed.file_with(make_malformed.metadata(data), entries, data))
    try:
        model = read_model(path)
    except InvalidModelFile:
        return
    assert sum(arr.nbytes for arr in model.tensors.values()) == len(data)
    for name, arr in model.tensors.items():
        assert list(arr.shape) == entries[name]["shape"]


# ---------------------------------------------------------------------- graph

CONFIG = {
    "vocab_size": 10,
    "hidden_size": 4,
    "num_layers": 1,
    "num_heads": 2,
    "intermediate_size": 8,
    "max_position_embeddings": 6,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
    "hidden_act": "gelu",
}


def graph_tensors() -> dict[str, np.ndarray]:
    h, f = CONFIG["hidden_size"], CONFIG["intermediate_size"]
    out = {
        "token_embd.weight": np.zeros((CONFIG["vocab_size"], h), np.int8),
        "token_embd.scale": np.ones(CONFIG["vocab_size"], np.float32),
        "position_embd.weight": np.zeros((CONFIG["max_position_embeddings"], h), np.float32),
        "token_type_embd.weight": np.zeros((CONFIG["type_vocab_size"], h), np.float32),
    }
    for norm in ("embd_norm", "blk.0.attn_norm", "blk.0.ffn_norm"):
        out[f"{norm}.weight"] = np.ones(h, np.float32)
        out[f"{norm}.bias"] = np.zeros(h, np.float32)
    for name, (n, k) in {"attn_qkv": (3 * h, h), "attn_output": (h, h), "ffn_up": (f, h), "ffn_down": (h, f)}.items():
        out[f"blk.0.{name}.weight"] = np.zeros((n, k), np.int8)
        out[f"blk.0.{name}.scale"] = np.ones(n, np.float32)
        out[f"blk.0.{name}.bias"] = np.zeros(n, np.float32)
    return out


def node(op, inputs, outputs, params=None, attrs=None) -> dict:
    return {"op": op, "inputs": inputs, "outputs": outputs, "params": params or {}, "attrs": attrs or {}}


def linear(x, y, prefix, activation="none") -> dict:
    return node("linear", [x], [y], {"linear": prefix}, {"activation": activation})


GRAPH = {
    "inputs": ["input_ids", "token_type_ids", "position_ids", "seq_offsets"],
    "outputs": ["last_hidden_state"],
    "nodes": [
        node(
            "embed",
            ["input_ids", "token_type_ids", "position_ids"],
            ["h0"],
            {"word": "token_embd", "position": "position_embd", "token_type": "token_type_embd", "norm": "embd_norm"},
            {"eps": 1e-12},
        ),
        linear("h0", "qkv0", "blk.0.attn_qkv"),
        node("attention", ["qkv0", "seq_offsets"], ["ctx0"], {}, {"num_heads": 2}),
        linear("ctx0", "ao0", "blk.0.attn_output"),
        node("add_norm", ["ao0", "h0"], ["n0"], {"norm": "blk.0.attn_norm"}, {"eps": 1e-12}),
        linear("n0", "up0", "blk.0.ffn_up", "gelu"),
        linear("up0", "down0", "blk.0.ffn_down"),
        node("add_norm", ["down0", "n0"], ["last_hidden_state"], {"norm": "blk.0.ffn_norm"}, {"eps": 1e-12}),
    ],
}


def test_valid_graph_passes_with_arrays_shapes_and_header(tmp_path: Path) -> None:
    tensors = graph_tensors()
    validate_graph(GRAPH, tensors, CONFIG)
    validate_graph(GRAPH, {name: arr.shape for name, arr in tensors.items()}, CONFIG)
    path = tmp_path / "g.edgebert"
    write_model(path, tensors, {"edgebert.graph": GRAPH, "edgebert.config": CONFIG})
    header = read_header(path)
    validate_graph(header.json("edgebert.graph"), header.tensors, header.json("edgebert.config"))


def _set(path, value):
    def apply(graph, tensors, config):
        target = graph
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return apply


def _drop_tensor(name):
    return lambda graph, tensors, config: tensors.pop(name)


def _reshape_tensor(name, shape):
    return lambda graph, tensors, config: tensors.__setitem__(name, np.zeros(shape, tensors[name].dtype))


GRAPH_MUTATIONS = {
    "unknown_op": (_set(("nodes", 1, "op"), "conv"), "graph node 1 ('conv'): unknown op"),
    "misspelt_param": (_set(("nodes", 1, "params"), {"lineer": "blk.0.attn_qkv"}), "graph node 1 ('linear'): params"),
    "unknown_attr": (_set(("nodes", 2, "attrs"), {"num_heads": 2, "x": 1}), "graph node 2 ('attention'): attrs"),
    "bad_activation": (_set(("nodes", 5, "attrs"), {"activation": "silu"}), "attr 'activation' has invalid value 'silu'"),
    "bad_eps": (_set(("nodes", 4, "attrs"), {"eps": -1.0}), "graph node 4 ('add_norm'): attr 'eps'"),
    "input_not_produced": (_set(("nodes", 3, "inputs"), ["ctx9"]), "graph node 3 ('linear'): input 'ctx9' is not"),
    "input_used_before_defined": (_set(("nodes", 1, "inputs"), ["n0"]), "graph node 1 ('linear'): input 'n0'"),
    "output_redefined": (_set(("nodes", 3, "outputs"), ["h0"]), "output 'h0' is already defined"),
    "wrong_arity": (_set(("nodes", 2, "inputs"), ["qkv0"]), "graph node 2 ('attention'): needs 2 input"),
    "linear_on_ids": (_set(("nodes", 1, "inputs"), ["input_ids"]), "is a graph input, not an activation"),
    "heads_mismatch": (_set(("nodes", 2, "attrs"), {"num_heads": 4}), "num_heads 4 must equal config num_heads"),
    "unknown_graph_input": (_set(("inputs",), ["input_ids", "mask"]), "graph inputs"),
    "output_not_produced": (_set(("outputs",), ["nope"]), "graph output 'nope' is not produced"),
    "node_not_object": (_set(("nodes", 0), "embed"), "graph node 0 (None): node must be an object"),
    "absent_tensor": (_drop_tensor("blk.0.ffn_up.bias"), "graph node 5 ('linear'): tensor 'blk.0.ffn_up.bias' is absent"),
    "absent_scale": (_drop_tensor("blk.0.attn_qkv.scale"), "tensor 'blk.0.attn_qkv.scale' is absent"),
    "absent_norm": (_drop_tensor("embd_norm.weight"), "graph node 0 ('embed'): tensor 'embd_norm.weight' is absent"),
    "wrong_weight_k": (_reshape_tensor("blk.0.ffn_down.weight", (4, 7)), "graph node 6 ('linear'): tensor 'blk.0.ffn_down.weight'"),
    "wrong_scale": (_reshape_tensor("blk.0.attn_output.scale", (5,)), "'blk.0.attn_output.scale' has shape (5,), expected (4,)"),
    "wrong_bias": (_reshape_tensor("blk.0.attn_output.bias", (3,)), "'blk.0.attn_output.bias' has shape (3,)"),
    "wrong_norm": (_reshape_tensor("blk.0.ffn_norm.weight", (8,)), "graph node 7 ('add_norm'): tensor 'blk.0.ffn_norm.weight'"),
    "wrong_vocab": (_reshape_tensor("token_embd.weight", (11, 4)), "graph node 0 ('embed'): tensor 'token_embd.weight'"),
    "qkv_not_3h": (_reshape_tensor("blk.0.attn_qkv.weight", (8, 4)), "graph node 1 ('linear'): tensor 'blk.0.attn_qkv.scale'"),
    "bias_wrong_dtype": (
        lambda g, t, c: t.__setitem__("blk.0.ffn_up.bias", np.zeros(8, np.int32)),
        "tensor 'blk.0.ffn_up.bias' has dtype I32, expected F32",
    ),
    "weight_wrong_dtype": (
        lambda g, t, c: t.__setitem__("blk.0.ffn_up.weight", np.zeros((8, 4), np.int32)),
        "tensor 'blk.0.ffn_up.weight' has dtype I32, expected F32 or I8",
    ),
    "bad_config": (lambda g, t, c: c.pop("hidden_size"), "config 'hidden_size' must be a positive integer"),
}


@pytest.mark.parametrize("case", sorted(GRAPH_MUTATIONS))
def test_graph_refusals(case: str) -> None:
    graph, tensors, config = copy.deepcopy(GRAPH), graph_tensors(), dict(CONFIG)
    apply, message = GRAPH_MUTATIONS[case]
    apply(graph, tensors, config)
    with pytest.raises(InvalidModelFile) as info:
        validate_graph(graph, tensors, config)
    assert message in str(info.value)


def test_qkv_width_mismatch_caught_at_attention() -> None:
    """A consistent but wrong-sized linear (N=8 instead of 3H=12) is caught where its output is used."""
    tensors = graph_tensors()
    for suffix, shape in ((".weight", (8, 4)), (".scale", (8,)), (".bias", (8,))):
        tensors["blk.0.attn_qkv" + suffix] = np.zeros(shape, tensors["blk.0.attn_qkv" + suffix].dtype)
    with pytest.raises(InvalidModelFile, match=r"graph node 2 \('attention'\): inputs have widths \[8, None\]"):
        validate_graph(GRAPH, tensors, CONFIG)


def test_float_weights_need_no_scale_and_refuse_one() -> None:
    tensors = graph_tensors()
    tensors["blk.0.ffn_up.weight"] = tensors["blk.0.ffn_up.weight"].astype(np.float32)
    with pytest.raises(InvalidModelFile, match="'blk.0.ffn_up.scale' present but"):
        validate_graph(GRAPH, tensors, CONFIG)
    del tensors["blk.0.ffn_up.scale"]
    validate_graph(GRAPH, tensors, CONFIG)


def test_op_table_is_data() -> None:
    assert set(OPS) == {"embed", "linear", "attention", "add_norm", "geglu", "first_token", "norm", "tied_linear",
                        "relative_attention", "rotary", "add", "mean_pool", "disentangled_attention",
                        "neighbours"}
    assert OPS["linear"].params == ("linear",)
    assert json.dumps(sorted(OPS["embed"].params))


def test_a_verified_file_is_not_hashed_again_until_it_changes(tmp_path, monkeypatch, tiny_int8):
    """The checksum of an unchanged file is remembered; a byte flipped in place (same size, even with
    the modification time set back) is caught on the next read, and a refusal is never remembered."""
    import shutil

    from edgebert import format as fmt

    monkeypatch.setenv("EDGEBERT_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "m.edgebert"
    shutil.copyfile(tiny_int8, path)
    hashed = []
    real = fmt._verify_checksum
    monkeypatch.setattr(fmt, "_verify_checksum", lambda *a: (hashed.append(1), real(*a)))
    read_model(path)
    read_model(path)
    assert len(hashed) == 1
    before = path.stat()
    with open(path, "r+b") as f:  # flip the last payload byte in place
        f.seek(-1, os.SEEK_END)
        last = f.read(1)
        f.seek(-1, os.SEEK_END)
        f.write(bytes([last[0] ^ 0x01]))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    for _ in range(2):
        with pytest.raises(InvalidModelFile, match="payload is corrupted"):
            read_model(path)
    assert len(hashed) == 3
