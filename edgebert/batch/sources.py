"""Records in: .txt, .jsonl, .csv, .parquet files or a folder of them, streamed in input order.

Every record comes out as a :class:`Record`, in input order; a bad one (missing field,
non-string text, undecodable bytes) carries its reason instead of failing the run. A file
that is not what its extension says is refused by :func:`open_source` before any work.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..errors import InputError

FORMATS = (".txt", ".jsonl", ".csv", ".parquet")
SNIFF_BYTES = 64 * 1024
IDENTITY_BLOCK = 1 << 20  # the first and last MiB of each file are hashed into its identity
PARQUET_BATCH = 4096


@dataclass(frozen=True)
class Record:
    id: Any
    text: Any = None
    pair: Any = None
    reason: str = ""  # why it is rejected; "" for a good record


@dataclass(frozen=True)
class Fields:
    text: str | None = None  # None for .txt
    id: str | None = None
    pair: str | None = None


class Source:
    """One input (a file, a folder, or stdin ``"-"``) and the fields to take from it."""

    def __init__(self, path: str, fields: Fields):
        self.path, self.fields = path, fields
        self.files = _files(path)
        kinds = {_kind(f) for f in self.files}
        if len(kinds) > 1:
            raise InputError(f"{path}: a folder of mixed formats ({', '.join(sorted(kinds))}); use one format")
        self.kind = kinds.pop() if kinds else ".txt"
        if self.kind != ".txt" and not fields.text:
            raise InputError(f"{path}: {self.kind} input needs --text-field (the column that holds the text)")
        for f in self.files:
            _sniff(f, self.kind, fields)

    @property
    def id_name(self) -> str | None:
        """The id column of the output: the id field, "line" for text files, or none."""
        return self.fields.id or ("line" if self.kind == ".txt" else None)

    def identity(self) -> list | None:
        """What says the input is unchanged on resume (None for stdin: it cannot be resumed)."""
        if self.path == "-":
            return None
        return [_identity(f) for f in self.files]

    def records(self) -> Iterator[Record]:
        for f in self.files or ["-"]:
            yield from READERS[self.kind](f, self.fields, len(self.files) > 1)


def _files(path: str) -> list[str]:
    if path == "-":
        return []
    p = Path(path)
    if p.is_dir():
        files = sorted(str(f) for f in p.iterdir() if f.is_file() and f.suffix.lower() in FORMATS)
        if not files:
            raise InputError(f"{path}: the folder has no {', '.join(FORMATS)} files")
        return files
    if not p.is_file():
        raise InputError(f"{path}: no such file or folder")
    _kind(path)
    return [path]


def _kind(path: str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise InputError(f"{path}: unknown input format {suffix or '(no extension)'}; "
                         f"supported: {', '.join(FORMATS)}")
    return suffix


def _identity(path: str) -> dict:
    st = os.stat(path)
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        digest.update(f.read(IDENTITY_BLOCK))
        if st.st_size > IDENTITY_BLOCK:
            f.seek(max(IDENTITY_BLOCK, st.st_size - IDENTITY_BLOCK))
            digest.update(f.read())
    return {"path": os.path.abspath(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "sha256_ends": digest.hexdigest()}


def pyarrow():
    """pyarrow, or a clear error: Parquet is an optional extra, not a runtime dependency."""
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise InputError("Parquet input and output need pyarrow: pip install 'edgebert[batch]'") from None
    return pyarrow


def _sniff(path: str, kind: str, fields: Fields) -> None:
    """Refuse a file that is not what its extension says, before any work."""
    if kind == ".parquet":
        try:
            schema = pyarrow().parquet.ParquetFile(path).schema_arrow
        except Exception as e:  # pyarrow raises ArrowInvalid, OSError...
            raise InputError(f"{path}: not a Parquet file ({e})") from None
        missing = [f for f in (fields.text, fields.id, fields.pair) if f and f not in schema.names]
        if missing:
            raise InputError(f"{path}: no column {missing[0]!r}; its columns: {', '.join(schema.names)}")
        return
    with open(path, "rb") as f:
        head = f.read(SNIFF_BYTES)
    if b"\x00" in head:
        raise InputError(f"{path}: binary data (a NUL byte in the first {SNIFF_BYTES // 1024} KiB), "
                         f"not a {kind} file")
    if kind == ".jsonl":
        first = next((line for line in head.splitlines() if line.strip()), b"")
        try:
            ok = isinstance(json.loads(first), dict) if first else True
        except ValueError:
            ok = False
        if not ok:
            raise InputError(f"{path}: the first line is not a JSON object; not a JSON-lines file")
    elif kind == ".csv":
        header = next(csv.reader(io.StringIO(head.decode("utf-8", "replace"))), [])
        missing = [f for f in (fields.text, fields.id, fields.pair) if f and f not in header]
        if missing:
            raise InputError(f"{path}: no column {missing[0]!r} in the CSV header {header}")


def _lines(path: str) -> Iterator[bytes]:
    stream = sys.stdin.buffer if path == "-" else open(path, "rb")
    try:
        for line in stream:
            yield line.rstrip(b"\r\n")
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def _read_txt(path: str, fields: Fields, many: bool) -> Iterator[Record]:
    for number, raw in enumerate(_lines(path), start=1):
        rid = f"{Path(path).name}:{number}" if many else number
        try:
            yield Record(rid, raw.decode("utf-8"))
        except UnicodeDecodeError as e:
            yield Record(rid, reason=f"line {number} is not valid UTF-8 (byte {e.start}: {e.reason})")


def to_record(values: dict, fields: Fields, fallback_id) -> Record:
    rid = values.get(fields.id) if fields.id else fallback_id
    for name in (fields.text, fields.pair):
        if not name:
            continue
        if values.get(name) is None:
            return Record(rid, reason=f"no field {name!r}")
        value = values[name]
        if not isinstance(value, str):
            return Record(rid, reason=f"field {name!r} is {type(value).__name__}, not a string")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return Record(rid, reason=f"field {name!r} has bytes that are not valid UTF-8")
    if fields.id and rid is None:
        return Record(None, reason=f"no id field {fields.id!r}")
    return Record(rid, values[fields.text], values.get(fields.pair) if fields.pair else None)


def _read_jsonl(path: str, fields: Fields, many: bool) -> Iterator[Record]:
    for number, raw in enumerate(_lines(path), start=1):
        if not raw.strip():
            continue
        try:
            values = json.loads(raw.decode("utf-8", "surrogateescape"))
        except ValueError as e:
            yield Record(number, reason=f"line {number} is not JSON ({e})")
            continue
        if not isinstance(values, dict):
            yield Record(number, reason=f"line {number} is a JSON {type(values).__name__}, not an object")
            continue
        yield to_record(values, fields, number)


def _read_csv(path: str, fields: Fields, many: bool) -> Iterator[Record]:
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
        for number, values in enumerate(csv.DictReader(f), start=1):
            yield to_record(values, fields, number)


def _read_parquet(path: str, fields: Fields, many: bool) -> Iterator[Record]:
    columns = [c for c in dict.fromkeys((fields.text, fields.id, fields.pair)) if c]
    number = 0
    for batch in pyarrow().parquet.ParquetFile(path).iter_batches(batch_size=PARQUET_BATCH, columns=columns):
        for values in batch.to_pylist():
            number += 1
            yield to_record(values, fields, number)


READERS = {".txt": _read_txt, ".jsonl": _read_jsonl, ".csv": _read_csv, ".parquet": _read_parquet}
