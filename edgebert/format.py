"""Read and write ``.edgebert`` files (docs/format.md, version 1).

This is the only module that touches the file format. The container is
safetensors, implemented here with the stdlib and numpy so the runtime does not
depend on the safetensors package. A model file is untrusted input: every size
in the header is checked, with Python integers, against the real file size
before anything is allocated or read, and every refusal is an
``InvalidModelFile`` that names the file, the tensor and the numbers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import mmap as _mmap
import os
import re
import tempfile
from typing import Any, Mapping

import numpy as np

from edgebert import names, ops
from edgebert.errors import InvalidModelFile
from edgebert.ops import GRAPH_INPUTS, OPS
from edgebert.ops import is_int as _is_int
from edgebert.ops import show as _show

MAGIC = "edgebert"
FORMAT_VERSION = "1"
SUPPORTED_VERSIONS = ("1",)
KEY_FORMAT, KEY_VERSION, KEY_CHECKSUM = names.FORMAT, names.VERSION, names.CHECKSUM

ALIGNMENT = 64
MIN_HEADER_LEN = 2
MAX_HEADER_LEN = 100_000_000
MAX_RANK = 4
MAX_DIM = 2**31 - 1
MAX_TENSORS = 10_000
MAX_NAME_BYTES = 256
_HASH_CHUNK = 1 << 24

# Allow-list: header dtype name -> little-endian numpy dtype, and back.
DTYPES = {"F32": np.dtype("<f4"), "I32": np.dtype("<i4"), "I8": np.dtype("i1")}
_DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}
_ENTRY_KEYS = frozenset({"dtype", "shape", "data_offsets"})
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """One header entry after validation; begin/end are relative to the tensor bytes."""

    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


class _JsonMetadata:
    """Shared ``.json(key)`` so every consumer parses metadata with the same refusals."""

    path: str
    metadata: dict[str, str]

    def json(self, key: str) -> Any:
        """Parse a JSON metadata value; absent or invalid is a malformed file, not a KeyError."""
        if key not in self.metadata:
            raise InvalidModelFile(f"{self.path}: metadata key {key!r} is missing")
        try:
            return json.loads(self.metadata[key], parse_constant=_refuse_constant)
        except (ValueError, RecursionError) as exc:
            raise InvalidModelFile(f"{self.path}: metadata key {key!r} is not valid JSON: {exc}") from None


@dataclasses.dataclass(frozen=True)
class ModelHeader(_JsonMetadata):
    """A validated header: what ``edgebert info`` shows without reading tensor data."""

    path: str
    metadata: dict[str, str]
    tensors: dict[str, TensorInfo]
    data_start: int
    data_length: int


@dataclasses.dataclass(frozen=True)
class ModelFile(_JsonMetadata):
    """A loaded model: raw metadata strings and read-only tensors."""

    path: str
    metadata: dict[str, str]
    tensors: dict[str, np.ndarray]

    def release_pages(self) -> None:
        """Let the OS drop the file's pages from this process's memory (they are
        read back on the next touch): after load, the checksum and the weight
        packing have touched the whole map, but inference reads only the
        embedding rows of the tokens it sees. A no-op for a file read into memory.
        """
        payload = next(iter(self.tensors.values()), None)
        base = payload.base if payload is not None else None
        while isinstance(base, (np.ndarray, memoryview)):
            base = base.base if isinstance(base, np.ndarray) else base.obj
        if isinstance(base, _mmap.mmap) and hasattr(_mmap, "MADV_DONTNEED"):
            try:
                base.madvise(_mmap.MADV_DONTNEED)
            except (OSError, ValueError):
                pass  # advice only


# --------------------------------------------------------------------- writing


def write_model(path, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, object]) -> None:
    """Write a model atomically, so a crash never leaves a half-written file at ``path``."""
    arrays = _prepare_arrays(tensors)
    order = sorted(arrays, key=lambda name: (-arrays[name].dtype.itemsize, name))
    digest = hashlib.sha256()
    for name in order:
        digest.update(_as_bytes(arrays[name]))
    meta = _prepare_metadata(metadata)
    meta[KEY_CHECKSUM] = digest.hexdigest()
    header = _encode_header(meta, arrays, order)
    _atomic_write(os.fspath(path), header, [arrays[name] for name in order])


def _prepare_arrays(tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Refuse what a reader would refuse, so the writer cannot produce a bad file."""
    if len(tensors) > MAX_TENSORS:
        raise ValueError(f"{len(tensors)} tensors, more than the limit {MAX_TENSORS}")
    out = {}
    for name, value in tensors.items():
        if not isinstance(name, str) or name == "__metadata__" or not _name_ok(name):
            raise ValueError(f"tensor name {name!r} must be 1 to {MAX_NAME_BYTES} bytes of UTF-8")
        arr = np.asarray(value)
        kind = _DTYPE_NAMES.get(arr.dtype.newbyteorder("<"))
        if kind is None:
            raise ValueError(f"tensor {name!r} has dtype {arr.dtype}; allowed: float32, int32, int8")
        if not 1 <= arr.ndim <= MAX_RANK or not all(1 <= d <= MAX_DIM for d in arr.shape):
            raise ValueError(f"tensor {name!r} has shape {arr.shape}; need rank 1..{MAX_RANK}, dims 1..{MAX_DIM}")
        out[name] = np.ascontiguousarray(arr, dtype=DTYPES[kind])
    return out


def _prepare_metadata(metadata: Mapping[str, object]) -> dict[str, str]:
    """JSON-encode non-string values; reserved keys are ours (a round trip may pass them back)."""
    meta = {KEY_FORMAT: MAGIC, KEY_VERSION: FORMAT_VERSION}
    for key, value in metadata.items():
        if not isinstance(key, str):
            raise ValueError(f"metadata key {key!r} must be a str")
        if key == KEY_CHECKSUM:
            continue  # always recomputed
        if not isinstance(value, str):
            try:
                value = json.dumps(value, sort_keys=True, allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"metadata {key!r} cannot be encoded as JSON: {exc}") from None
        if key in meta and value != meta[key]:
            raise ValueError(f"metadata {key!r} is set by the writer to {meta[key]!r}, got {value!r}")
        meta[key] = value
    return meta


def _encode_header(meta: dict[str, str], arrays: dict[str, np.ndarray], order: list[str]) -> bytes:
    """Header JSON in data order, space-padded so the tensor bytes start 64-aligned."""
    header: dict[str, Any] = {"__metadata__": dict(sorted(meta.items()))}
    offset = 0
    for name in order:
        arr = arrays[name]
        kind = _DTYPE_NAMES[arr.dtype]
        header[name] = {"dtype": kind, "shape": list(arr.shape), "data_offsets": [offset, offset + arr.nbytes]}
        offset += arr.nbytes
    try:
        raw = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"metadata or a tensor name is not encodable as UTF-8: {exc}") from None
    raw += b" " * ((-(8 + len(raw))) % ALIGNMENT)
    if len(raw) > MAX_HEADER_LEN:
        raise ValueError(f"header is {len(raw)} bytes, more than the limit {MAX_HEADER_LEN}")
    return len(raw).to_bytes(8, "little") + raw


def _as_bytes(arr: np.ndarray) -> memoryview:
    """A flat byte view of a C-contiguous array, so hashing and writing copy nothing."""
    return memoryview(arr.reshape(-1).view(np.uint8))


def _atomic_write(path: str, header: bytes, arrays: list[np.ndarray]) -> None:
    """Temp file in the same folder, fsync, os.replace, fsync the folder: atomic and durable."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(header)
            for arr in arrays:
                f.write(_as_bytes(arr))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(folder)


def _fsync_dir(folder: str) -> None:
    """Make the rename durable; some platforms cannot open a directory, which is fine there."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


# --------------------------------------------------------------------- reading


def read_header(path) -> ModelHeader:
    """Parse and validate only the header: cheap even for a huge file."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        return _read_header(f, path, os.fstat(f.fileno()).st_size)


def read_model(path, verify_checksum: bool = True, mmap: bool = True) -> ModelFile:
    """Load a model; tensors are read-only, zero-copy views of a memory map when possible."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        stat = os.fstat(f.fileno())
        size = stat.st_size
        header = _read_header(f, path, size)
        payload = _map_data(f, path, size, header) if mmap else _read_data(f, path, header)
    if verify_checksum:
        marker = _verified_marker(path, stat, header.metadata)
        if marker is None or not marker.exists():
            _verify_checksum(path, header.metadata, payload)
            _touch(marker)
    tensors = {name: _tensor_view(payload, info) for name, info in header.tensors.items()}
    return ModelFile(path=path, metadata=header.metadata, tensors=tensors)


def _read_header(f, path: str, size: int) -> ModelHeader:
    """Validate in the checklist's order: sizes, JSON, magic and version, then tensors."""
    if size < 8:
        raise InvalidModelFile(f"{path}: file is too small ({size} bytes, need at least 8)")
    n = int.from_bytes(_read_exact(f, 8, path), "little")
    if not MIN_HEADER_LEN <= n <= MAX_HEADER_LEN:
        raise InvalidModelFile(f"{path}: header length {n} out of range [{MIN_HEADER_LEN}, {MAX_HEADER_LEN}]")
    if 8 + n > size:
        raise InvalidModelFile(f"{path}: header length {n} extends past the end of the file ({size} bytes)")
    obj = _parse_json(_read_exact(f, n, path), path)
    metadata = _check_metadata(obj.pop("__metadata__", None), path)
    if len(obj) > MAX_TENSORS:
        raise InvalidModelFile(f"{path}: {len(obj)} tensors, more than the limit {MAX_TENSORS}")
    tensors = {name: _check_entry(name, entry, path) for name, entry in obj.items()}
    data_length = size - 8 - n
    _check_layout(tensors, data_length, path)
    return ModelHeader(path, metadata, tensors, 8 + n, data_length)


def _read_exact(f, count: int, path: str) -> bytes:
    """A short read means the file shrank under us: refuse rather than parse garbage."""
    data = f.read(count)
    if len(data) != count:
        raise InvalidModelFile(f"{path}: file is truncated (wanted {count} bytes, got {len(data)})")
    return data


class _DuplicateKey(Exception):
    """Raised from the JSON hook; json.loads would otherwise keep the last duplicate silently."""


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _refuse_constant(name: str) -> None:
    """NaN and Infinity are not JSON; other safetensors readers would refuse them."""
    raise ValueError(f"non-standard JSON constant {name}")


def _parse_json(raw: bytes, path: str) -> dict:
    """Strict UTF-8, strict JSON, no duplicate keys, an object at the top."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidModelFile(f"{path}: header is not valid UTF-8 (byte {exc.start})") from None
    try:
        obj = json.loads(text, object_pairs_hook=_unique_pairs, parse_constant=_refuse_constant)
    except _DuplicateKey as exc:
        raise InvalidModelFile(f"{path}: header has a duplicate key {_show(exc.args[0])} (duplicate tensor name?)") from None
    except RecursionError:
        raise InvalidModelFile(f"{path}: header is not valid JSON (nested too deeply)") from None
    except ValueError as exc:
        raise InvalidModelFile(f"{path}: header is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise InvalidModelFile(f"{path}: header is not a JSON object (got {type(obj).__name__})")
    return obj


def _check_metadata(meta: Any, path: str) -> dict[str, str]:
    """str -> str map with our magic and a version we know (fail closed)."""
    if meta is None:
        raise InvalidModelFile(f"{path}: header has no __metadata__ (not an edgebert file)")
    if not isinstance(meta, dict):
        raise InvalidModelFile(f"{path}: __metadata__ is not a JSON object")
    for key, value in meta.items():
        if not isinstance(value, str):
            raise InvalidModelFile(f"{path}: metadata value of {_show(key)} is not a string ({type(value).__name__})")
        if not _utf8_ok(key) or not _utf8_ok(value):
            raise InvalidModelFile(f"{path}: metadata {_show(key)} is not valid UTF-8 (lone surrogate)")
    if meta.get(KEY_FORMAT) != MAGIC:
        raise InvalidModelFile(f"{path}: not an edgebert file ({KEY_FORMAT} is {_show(meta.get(KEY_FORMAT))})")
    version = meta.get(KEY_VERSION)
    if version is None:
        raise InvalidModelFile(f"{path}: missing {KEY_VERSION} (supported: {', '.join(SUPPORTED_VERSIONS)})")
    if version not in SUPPORTED_VERSIONS:
        raise InvalidModelFile(
            f"{path}: unsupported {KEY_VERSION} {_show(version)} (this reader supports: {', '.join(SUPPORTED_VERSIONS)})"
        )
    return meta


def _utf8_ok(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _name_ok(name: str) -> bool:
    return _utf8_ok(name) and 1 <= len(name.encode("utf-8")) <= MAX_NAME_BYTES


def _check_entry(name: str, entry: Any, path: str) -> TensorInfo:
    """One tensor entry: exact keys, allow-listed dtype, capped shape, honest byte size."""
    where = f"{path}: tensor {_show(name)}"
    if not _name_ok(name):
        raise InvalidModelFile(f"{where}: name must be 1 to {MAX_NAME_BYTES} bytes of UTF-8")
    if not isinstance(entry, dict):
        raise InvalidModelFile(f"{where}: entry is not a JSON object")
    if set(entry) != _ENTRY_KEYS:
        raise InvalidModelFile(f"{where}: entry keys {_show(sorted(entry))} must be exactly {sorted(_ENTRY_KEYS)}")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise InvalidModelFile(f"{where}: unsupported dtype {_show(dtype)} (allowed: {', '.join(DTYPES)})")
    if not isinstance(shape, list) or not all(_is_int(d) for d in shape):
        raise InvalidModelFile(f"{where}: shape {_show(shape)} is not a list of integers")
    if not 1 <= len(shape) <= MAX_RANK:
        raise InvalidModelFile(f"{where}: rank {len(shape)} out of range [1, {MAX_RANK}]")
    for d in shape:
        if not 1 <= d <= MAX_DIM:
            raise InvalidModelFile(f"{where}: dimension {d} out of range [1, {MAX_DIM}]")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_int(o) for o in offsets):
        raise InvalidModelFile(f"{where}: data_offsets {_show(offsets)} is not two integers")
    begin, end = offsets
    if not 0 <= begin <= end:
        raise InvalidModelFile(f"{where}: data_offsets [{begin}, {end}] are not 0 <= begin <= end")
    nbytes = math.prod(shape) * DTYPES[dtype].itemsize
    if nbytes != end - begin:
        raise InvalidModelFile(
            f"{where}: shape {shape} x {dtype} is {nbytes} bytes but data_offsets [{begin}, {end}] "
            f"span {end - begin} bytes (does not match)"
        )
    return TensorInfo(dtype, tuple(shape), begin, end)


def _check_layout(tensors: dict[str, TensorInfo], data_length: int, path: str) -> None:
    """Sorted, contiguous from 0, no overlap, no gap, ending exactly at the end of the file."""
    expected, previous = 0, None
    for name, info in sorted(tensors.items(), key=lambda item: (item[1].begin, item[1].end)):
        if info.begin < expected:
            raise InvalidModelFile(
                f"{path}: tensor {_show(name)} at [{info.begin}, {info.end}] overlaps tensor {_show(previous)} ending at {expected}"
            )
        if info.begin > expected:
            raise InvalidModelFile(
                f"{path}: gap of {info.begin - expected} bytes before tensor {_show(name)} at {info.begin} "
                f"(previous data ends at {expected})"
            )
        expected, previous = info.end, name
    if expected > data_length:
        raise InvalidModelFile(
            f"{path}: tensor data is truncated: header needs {expected} bytes, file has {data_length}"
        )
    if expected < data_length:
        raise InvalidModelFile(
            f"{path}: {data_length - expected} trailing bytes after the last tensor (data ends at {expected})"
        )


def _map_data(f, path: str, size: int, header: ModelHeader) -> np.ndarray:
    """Read-only map of the whole file; pages are loaded only when a tensor is touched."""
    try:
        mm = _mmap.mmap(f.fileno(), 0, access=_mmap.ACCESS_READ)
    except (OSError, ValueError) as exc:
        raise InvalidModelFile(f"{path}: cannot memory-map the file: {exc}") from None
    if len(mm) != size:
        raise InvalidModelFile(f"{path}: file changed size while loading ({size} -> {len(mm)} bytes)")
    return np.frombuffer(mm, dtype=np.uint8, count=header.data_length, offset=header.data_start)


def _read_data(f, path: str, header: ModelHeader) -> np.ndarray:
    """Copy the tensor bytes into memory; the size was checked against the file first."""
    buf = np.empty(header.data_length, dtype=np.uint8)
    f.seek(header.data_start)
    got = f.readinto(memoryview(buf)) if header.data_length else 0
    if got != header.data_length:
        raise InvalidModelFile(f"{path}: file is truncated (wanted {header.data_length} data bytes, got {got})")
    buf.flags.writeable = False
    return buf


def _verify_checksum(path: str, metadata: dict[str, str], payload: np.ndarray) -> None:
    """The payload hash catches bit rot and partial copies that keep the sizes right."""
    stored = metadata.get(KEY_CHECKSUM)
    if stored is None:
        raise InvalidModelFile(f"{path}: missing {KEY_CHECKSUM}; cannot verify (pass verify_checksum=False)")
    if not _SHA256_HEX.fullmatch(stored):
        raise InvalidModelFile(f"{path}: {KEY_CHECKSUM} {_show(stored)} is not 64 lowercase hex digits")
    digest = hashlib.sha256()
    for start in range(0, payload.size, _HASH_CHUNK):
        digest.update(payload[start : start + _HASH_CHUNK])
        _release(payload, start, start + _HASH_CHUNK)
    actual = digest.hexdigest()
    if actual != stored:
        raise InvalidModelFile(f"{path}: payload is corrupted: sha256 {actual} != stored {stored}")


def _verified_marker(path: str, stat: os.stat_result, metadata: dict):
    """Where a successful checksum of this very file is remembered (``$EDGEBERT_CACHE/verified``), or None.

    The key is the file's device, inode, size, modification and change times (the change time
    moves on any write and cannot be set back) and its stored checksum: a file rewritten, copied
    or truncated is hashed again; an unchanged one is not (hashing MiniLM's 24 MB was a tenth of
    a process's start). The checksum guards against corruption in transit, not against someone
    who may write the file, who could as well write a valid checksum.
    """
    stored = metadata.get(KEY_CHECKSUM)
    if not isinstance(stored, str):
        return None
    from .settings import cache_root

    key = (f"{os.path.realpath(path)}|{stat.st_dev}|{stat.st_ino}|{stat.st_size}|{stat.st_mtime_ns}|"
           f"{stat.st_ctime_ns}|{stored}")
    return cache_root() / "verified" / hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _touch(marker) -> None:
    if marker is None:
        return
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    except OSError:
        pass  # a read-only cache only costs the hash next time


def _release(payload: np.ndarray, start: int, stop: int) -> None:
    """Let the OS drop the mapped pages of payload[start:stop] (whole pages only) from this process:
    hashing touches every page, and keeping them would raise the loading peak by the file's size."""
    mm = payload.base
    while isinstance(mm, (np.ndarray, memoryview)):
        mm = mm.base if isinstance(mm, np.ndarray) else mm.obj
    if not isinstance(mm, _mmap.mmap) or not hasattr(_mmap, "MADV_DONTNEED"):
        return
    offset = payload.__array_interface__["data"][0] - np.frombuffer(mm, np.uint8).__array_interface__["data"][0]
    first = -(-(offset + start) // _mmap.PAGESIZE) * _mmap.PAGESIZE  # the first page wholly inside
    last = min(offset + stop, len(mm)) // _mmap.PAGESIZE * _mmap.PAGESIZE
    if last > first:
        try:
            mm.madvise(_mmap.MADV_DONTNEED, first, last - first)
        except (OSError, ValueError):
            pass  # advice only


def _tensor_view(payload: np.ndarray, info: TensorInfo) -> np.ndarray:
    """Zero-copy when aligned for the dtype; otherwise an aligned copy. Read-only either way."""
    dtype = DTYPES[info.dtype]
    raw = payload[info.begin : info.end]
    if raw.ctypes.data % dtype.itemsize:
        raw = raw.copy()
    arr = raw.view(dtype).reshape(info.shape)
    arr.flags.writeable = False
    return arr


# ----------------------------------------------------------------------- graph

_NODE_KEYS = frozenset({"op", "inputs", "outputs", "params", "attrs"})


def _str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) and v for v in value)


def validate_graph(graph: Any, tensors: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, int]:
    """Refuse a graph the runtime could not run, before any kernel sees it: walks the op
    schema (``edgebert.ops``) node by node. Returns each activation's row width, which
    the executor plans its buffers with.

    ``tensors`` maps names to shapes, or to objects with ``.shape`` (and
    ``.dtype``, used to require ``.scale`` exactly for int8 weights).
    """
    if not isinstance(graph, dict) or not {"inputs", "outputs", "nodes"} <= set(graph):
        raise InvalidModelFile("graph must be an object with inputs, outputs and nodes")
    if not _str_list(graph["inputs"]) or not set(graph["inputs"]) <= set(GRAPH_INPUTS):
        raise InvalidModelFile(f"graph inputs {_show(graph['inputs'])} must be names from {list(GRAPH_INPUTS)}")
    if not _str_list(graph["outputs"]) or not isinstance(graph["nodes"], list):
        raise InvalidModelFile("graph outputs must be a list of names and nodes a list")
    widths: dict[str, Any] = {name: ops.NO_WIDTH for name in graph["inputs"]}
    kinds = {name: ops.input_kind(name) for name in graph["inputs"]}
    ctx = ops.GraphContext(tensors, config if isinstance(config, Mapping) else {})
    for index, node in enumerate(graph["nodes"]):
        op = node.get("op") if isinstance(node, dict) else None
        try:
            outputs = _validate_node(node, widths, kinds, ctx)
        except ValueError as exc:
            raise InvalidModelFile(f"graph node {index} ({_show(op, 40)}): {exc}") from None
        widths.update(zip(node["outputs"], outputs))
        kinds.update((name, ops.ROWS) for name in node["outputs"])
    for name in graph["outputs"]:
        if widths.get(name, ops.NO_WIDTH) is ops.NO_WIDTH:
            raise InvalidModelFile(f"graph output {_show(name)} is not produced by any node")
    return {name: width for name, width in widths.items() if width is not ops.NO_WIDTH}


def _validate_node(node: Any, widths: dict[str, Any], kinds: dict[str, str], ctx: ops.GraphContext) -> list:
    """Structure, ports, params and attrs against the op's schema, then the op's own width and tensor rule."""
    if not isinstance(node, dict) or set(node) != _NODE_KEYS:
        raise ValueError(f"node must be an object with exactly the keys {sorted(_NODE_KEYS)}")
    spec = OPS.get(node["op"]) if isinstance(node["op"], str) else None
    if spec is None:
        raise ValueError(f"unknown op (known: {', '.join(OPS)})")
    ins, outs, params, attrs = node["inputs"], node["outputs"], node["params"], node["attrs"]
    if not _str_list(ins) or len(ins) != spec.n_inputs or not _str_list(outs) or len(outs) != spec.n_outputs:
        raise ValueError(f"needs {spec.n_inputs} input and {spec.n_outputs} output names")
    for name in ins:
        if name not in widths:
            raise ValueError(f"input {_show(name)} is not a graph input nor produced by an earlier node")
    for name in outs:
        if name in widths or outs.count(name) > 1:
            raise ValueError(f"output {_show(name)} is already defined")
    if not spec.params_ok(params):
        raise ValueError(f"params {_show(params)} must be exactly {list(spec.params)} with tensor name prefixes"
                         + (f" (optional: {list(spec.optional_params)})" if spec.optional_params else ""))
    required = set(spec.attrs) - set(spec.optional)
    if not isinstance(attrs, dict) or not required <= set(attrs) <= set(spec.attrs):
        raise ValueError(f"attrs {_show(attrs)} must be {sorted(required)}"
                         + (f" (optional: {list(spec.optional)})" if spec.optional else ""))
    for key, attr in spec.attrs.items():
        if key in attrs and not attr.check(attrs[key]):
            raise ValueError(f"attr {_show(key)} has invalid value {_show(attrs[key])}")
    ops.check_ports(spec, ins, kinds)
    return spec.infer({**node, "_widths": [widths[name] for name in ins]}, ctx)
