"""Build the corpus of malformed .edgebert files in tests/data/malformed/.

Run ``python tests/data/make_malformed.py`` to (re)write the corpus. The
files are built byte by byte here, without edgebert's writer, so a bug shared
by our writer and reader cannot hide a bad file. Deterministic: the same
bytes every run (tests check the committed files against ``CASES``).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import sys

# A valid file: "w" F32 (2, 3) then "q" I8 (4,), 28 tensor bytes.
W_BYTES = struct.pack("<6f", 0.0, 1.0, 2.0, 3.0, 4.0, 5.0)
Q_BYTES = bytes([1, 2, 0xFF, 0x81])
DATA = W_BYTES + Q_BYTES


def metadata(data: bytes = DATA, **override) -> dict:
    """Valid metadata for ``data``; an override of None drops the key."""
    meta = {
        "edgebert.format": "edgebert",
        "edgebert.version": "1",
        "edgebert.payload_sha256": hashlib.sha256(data).hexdigest(),
    }
    for key, value in override.items():
        key = key.replace("_", ".", 1)
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    return meta


def tensors(**entries) -> dict:
    """The valid tensor entries, with some fields replaced."""
    out = {
        "w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
        "q": {"dtype": "I8", "shape": [4], "data_offsets": [24, 28]},
    }
    for name, fields in entries.items():
        out[name] = {**out.get(name, {}), **fields}
    return out


def header_text(meta, entries: dict) -> str:
    return json.dumps({"__metadata__": meta, **entries}, separators=(",", ":"))


def pad(raw: bytes) -> bytes:
    return raw + b" " * ((-(8 + len(raw))) % 64)


def container(raw_header: bytes, data: bytes = DATA, length: int | None = None) -> bytes:
    """u64 length + header + data; ``length`` lets a case lie about the header size."""
    n = len(raw_header) if length is None else length
    return n.to_bytes(8, "little") + raw_header + data


def file_with(meta=None, entries=None, data: bytes = DATA) -> bytes:
    meta = metadata(data) if meta is None else meta
    entries = tensors() if entries is None else entries
    return container(pad(header_text(meta, entries).encode("utf-8")), data)


VALID = file_with()
VALID_HEADER_LEN = int.from_bytes(VALID[:8], "little")


def flip(blob: bytes, index: int, bit: int = 0) -> bytes:
    out = bytearray(blob)
    out[index] ^= 1 << bit
    return bytes(out)


def duplicate_names() -> bytes:
    entries = tensors(DUPW={"dtype": "I8", "shape": [4], "data_offsets": [24, 28]})
    del entries["q"]
    text = header_text(metadata(), entries).replace('"DUPW"', '"w"')
    return container(pad(text.encode()))


def non_utf8_header() -> bytes:
    text = header_text(metadata(note="@@"), tensors())
    return container(pad(text.encode().replace(b"@@", b"\xff\xfe")))


def lone_surrogate_name() -> bytes:
    entries = tensors(SURR={"dtype": "I8", "shape": [4], "data_offsets": [24, 28]})
    del entries["q"]
    return container(pad(header_text(metadata(), entries).replace('"SURR"', '"\\ud800"').encode()))


def gap() -> bytes:
    data = W_BYTES + b"\0\0" + Q_BYTES
    return file_with(metadata(data), tensors(q={"data_offsets": [26, 30]}), data)


def trailing() -> bytes:
    data = DATA + b"XXXX"  # the checksum covers the extra bytes: only the layout check can catch it
    return file_with(metadata(data), tensors(), data)


def nan_in_header() -> bytes:
    return container(pad(header_text(metadata(), tensors()).replace("[2,3]", "[NaN,3]").encode()))


def deep_nesting() -> bytes:
    return container(pad(b"[" * 2000 + b"]" * 2000))


CASES = {
    "empty": lambda: b"",
    "seven_bytes": lambda: VALID[:7],
    "header_len_zero": lambda: container(b"", b""),
    "truncated_header": lambda: VALID[: 8 + VALID_HEADER_LEN // 2],
    "truncated_data": lambda: VALID[:-4],
    "header_len_huge": lambda: container(VALID[8:], b"", length=2**64 - 1),
    "header_len_past_file": lambda: container(VALID[8:], b"", length=VALID_HEADER_LEN + 1000),
    "bitflip_payload": lambda: flip(VALID, len(VALID) - 10, 3),
    "bitflip_header_json": lambda: flip(VALID, 8),
    "header_not_object": lambda: container(pad(b"[1, 2, 3]"), b""),
    "deep_nesting": deep_nesting,
    "nan_in_header": nan_in_header,
    "non_utf8_header": non_utf8_header,
    "no_metadata": lambda: container(pad(json.dumps(tensors()).encode())),
    "metadata_not_string": lambda: file_with(metadata(edgebert_config={"hidden_size": 8})),
    "wrong_magic": lambda: file_with(metadata(edgebert_format="gguf")),
    "missing_version": lambda: file_with(metadata(edgebert_version=None)),
    "unknown_version": lambda: file_with(metadata(edgebert_version="999")),
    "missing_checksum": lambda: file_with(metadata(edgebert_payload_sha256=None)),
    "checksum_not_hex": lambda: file_with(metadata(edgebert_payload_sha256="abc")),
    "entry_not_object": lambda: file_with(entries={**tensors(), "q": [24, 28]}),
    "entry_unknown_key": lambda: file_with(entries=tensors(q={"offset": 0})),
    "dtype_f16": lambda: file_with(entries=tensors(w={"dtype": "F16", "shape": [2, 6]})),
    "dtype_f64": lambda: file_with(entries=tensors(w={"dtype": "F64", "shape": [3]})),
    "dtype_bool": lambda: file_with(entries=tensors(q={"dtype": "BOOL"})),
    "shape_not_ints": lambda: file_with(entries=tensors(w={"shape": [2.0, 3.0]})),
    "shape_bool": lambda: file_with(entries=tensors(w={"shape": [True, 6]})),
    "rank0": lambda: file_with(entries=tensors(w={"shape": []})),
    "rank5": lambda: file_with(entries=tensors(w={"shape": [1, 1, 1, 2, 3]})),
    "zero_dim": lambda: file_with(entries=tensors(w={"shape": [0, 3]})),
    "negative_dim": lambda: file_with(entries=tensors(w={"shape": [-2, -3]})),
    "huge_dim": lambda: file_with(entries=tensors(w={"shape": [2**31, 3]})),
    "huge_numel": lambda: file_with(entries=tensors(q={"shape": [2**31 - 1] * 4})),
    "lying_shape": lambda: file_with(entries=tensors(w={"shape": [100, 3]})),
    "offsets_not_ints": lambda: file_with(entries=tensors(q={"data_offsets": [24.0, 28.0]})),
    "offsets_three": lambda: file_with(entries=tensors(q={"data_offsets": [24, 28, 28]})),
    "offsets_reversed": lambda: file_with(entries=tensors(q={"data_offsets": [28, 24]})),
    "overlapping_offsets": lambda: file_with(entries=tensors(q={"data_offsets": [20, 24]})),
    "gap_in_offsets": gap,
    "trailing_bytes": trailing,
    "duplicate_names": duplicate_names,
    "empty_name": lambda: file_with(entries={"w": tensors()["w"], "": tensors()["q"]}),
    "name_too_long": lambda: file_with(entries={"w": tensors()["w"], "n" * 257: tensors()["q"]}),
    "lone_surrogate_name": lone_surrogate_name,
}


def main(folder: str) -> None:
    os.makedirs(folder, exist_ok=True)
    for name, build in CASES.items():
        blob = build()
        if len(blob) >= 4096:
            raise SystemExit(f"{name}: {len(blob)} bytes, the corpus keeps files under 4 KB")
        with open(os.path.join(folder, name + ".edgebert"), "wb") as f:
            f.write(blob)
    print(f"wrote {len(CASES)} files to {folder}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "malformed"))
