"""Results out: shards committed atomically, then one output file assembled atomically.

A shard is written to a temporary name, fsynced and renamed, so after a crash a
shard file is either whole or absent. The final output is assembled from the
shards the same way: it appears only when complete.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from .sources import pyarrow

FORMATS = (".parquet", ".jsonl", ".npy")


def output_format(path: str, source_kind: str, task: str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise InputError(f"{path}: unknown output format {suffix or '(no extension)'}; "
                         f"supported: {', '.join(FORMATS)}")
    if suffix == ".parquet":
        pyarrow()  # refused now, before any work, if it is missing
    if suffix == ".npy" and (source_kind != ".txt" or task != "embed"):
        raise InputError(f"{path}: .npy output is for embedding .txt input (it has no id column); "
                         "use .parquet or .jsonl")
    return suffix


def atomic_write(path: Path, write) -> None:
    """``write(file)`` into ``path`` so that it exists whole or not at all."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)  # the rename itself survives a power loss
    finally:
        os.close(fd)


class Sink:
    """Writes shards of one format and assembles them. ``id_name``: the id column, or None."""

    def __init__(self, fmt: str, id_name: str | None, id_type: str | None):
        self.fmt, self.id_name, self.id_type = fmt, id_name, id_type

    def shard_path(self, work: Path, index: int) -> Path:
        return work / f"shard-{index:06d}{self.fmt}"

    def write_shard(self, path: Path, ids: list, values) -> None:
        """``values``: (n, dim) float32 embeddings, or one JSON-able result per record."""
        if self.fmt == ".npy":
            atomic_write(path, lambda f: np.save(f, np.ascontiguousarray(values, dtype=np.float32)))
        elif self.fmt == ".jsonl":
            atomic_write(path, lambda f: f.write(self._jsonl(ids, values)))
        else:
            table = self._table(ids, values)
            atomic_write(path, lambda f: pyarrow().parquet.write_table(table, f))

    def _jsonl(self, ids, values) -> bytes:
        key = "embedding" if isinstance(values, np.ndarray) else "result"
        rows = values.tolist() if isinstance(values, np.ndarray) else values
        lines = [json.dumps({**({self.id_name: i} if self.id_name else {}), key: v}, ensure_ascii=False)
                 for i, v in zip(ids, rows)]
        return "".join(line + "\n" for line in lines).encode("utf-8")

    def _table(self, ids, values):
        pa = pyarrow()
        columns = {}
        if self.id_name:
            columns[self.id_name] = pa.array(ids, type=pa.int64() if self.id_type == "int" else pa.string())
        if isinstance(values, np.ndarray):
            flat = pa.array(np.ascontiguousarray(values, dtype=np.float32).reshape(-1))
            columns["embedding"] = pa.FixedSizeListArray.from_arrays(flat, values.shape[1])
        else:
            columns["result"] = pa.array([json.dumps(v, ensure_ascii=False) for v in values], type=pa.string())
        return pa.table(columns)

    def assemble(self, shards: list[Path], rows: int, out: Path) -> None:
        """The shards, in order, as one file at ``out`` (atomically)."""
        if self.fmt == ".jsonl":
            def write(f):
                for s in shards:
                    f.write(s.read_bytes())
        elif self.fmt == ".npy":
            def write(f):
                dim = np.load(shards[0], mmap_mode="r").shape[1] if shards else 0
                np.lib.format.write_array_header_1_0(
                    f, {"descr": "<f4", "fortran_order": False, "shape": (rows, dim)})
                for s in shards:
                    f.write(np.ascontiguousarray(np.load(s, mmap_mode="r")).tobytes())
        else:
            pq = pyarrow().parquet

            def write(f):
                schema = pq.read_schema(shards[0]) if shards else self._table([], []).schema
                with pq.ParquetWriter(f, schema) as writer:
                    for s in shards:
                        writer.write_table(pq.read_table(s))
        atomic_write(out, write)
