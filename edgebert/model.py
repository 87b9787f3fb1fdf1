"""The public model object: load a ``.edgebert`` file, embed texts, run token ids."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from . import names
from .errors import InputError, InvalidModelFile
from .parallel import BatchRunner, kernel_guard
from .runtime.executor import offsets_and_positions, pack_sequences
from .settings import resolve_threads
from .text import TextEncoder, as_text, chunks

from .description import POOLING_MODES  # noqa: F401  (declared there, with the other vocabularies)
TOKENIZE_CHUNK = 4096  # texts tokenized at a time: bounds memory on huge inputs


def load(path: str | Path, threads: int | None = None, backend: str = "auto") -> "Model":
    """Open a model file. ``threads``: None = $EDGEBERT_NUM_THREADS or all cores.

    ``backend``: "auto" runs the native kernel library built for this CPU
    (``edgebert warmup`` builds it; no Numba or LLVM in the process) where
    there is one and it has every op of the model, else the same kernels
    through Numba's JIT ("numba"); both give the same bits. "native" insists
    on the library (building it if missing). "numpy" runs the plain NumPy
    reference kernels (slow; with a float32 file it is the FP32 baseline).
    """
    from .format import read_model

    return Model(read_model(path), threads=threads, backend=backend)


BACKENDS = ("auto", "native", "numba", "numpy")


def _executor(graph, tensors, widths, backend):
    """The executor for ``backend`` ("auto": native where this CPU has a library with every op, else numba)."""
    from edgebert.runtime.executor import Executor, NativeUnsupported

    if backend not in BACKENDS:
        raise InputError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend in ("auto", "native"):
        from edgebert.runtime.native import library

        native = library.native_kernels(build_missing=backend == "native")
        if native is not None:
            try:
                return Executor(graph, tensors, widths, backend="native", native=native)
            except NativeUnsupported as exc:
                if backend == "native":
                    raise InvalidModelFile(f"backend='native': {exc}") from None
                library.notice(f"{exc}; using the JIT kernels")
        elif backend == "auto":
            library.notice("no native kernel library for this CPU yet (`edgebert warmup` builds one); "
                           "using the JIT kernels")
    if backend != "numpy":
        from .warmup import announce_first_compile

        announce_first_compile()
        backend = "numba"
    return Executor(graph, tensors, widths, backend=backend)


class Model:
    def __init__(self, model_file, threads: int | None = None, backend: str = "auto"):
        from edgebert.description import describe

        self.file = model_file
        meta = model_file.metadata
        # The graph says what runs (validated against the op schema); every descriptive field is
        # checked against it and the tensors, or derived from them (edgebert/description.py).
        self.description = describe(model_file)
        model_file.release_pages()  # describe's checks read every tensor: drop those pages before packing
        self.config, self.quantization = self.description.config, self.description.quantization
        self.pooling, tok_cfg = self.description.pooling, self.description.tokenizer_config
        graph, widths = self.description.graph, self.description.widths
        if self.pooling.get("mode") not in POOLING_MODES:
            raise InvalidModelFile(f"{model_file.path}: pooling mode {self.pooling.get('mode')!r} "
                                   f"is not one of {POOLING_MODES}")
        # positions a sequence may use: the table's rows from position_offset on (RoBERTa's start at 2)
        self.max_positions = self.config["max_position_embeddings"] - self.config.get("position_offset", 0)
        # how run() numbers position_ids: by column (BERT) or among real tokens (RoBERTa), as the graph says
        self.positions_by_token = any(n["op"] == "embed" and n["attrs"].get("position_ids") == "real_tokens"
                                      for n in graph["nodes"])
        # rows of the token type table the graph reads (None: type ids are ignored, DistilBERT)
        self.type_rows = (self.config["type_vocab_size"] if any(
            n["op"] == "embed" and "token_type" in n["params"] for n in graph["nodes"]) else None)
        self.max_length = _bounded_int(tok_cfg, "max_length", 2, self.max_positions)
        self.pad_token_id = _bounded_int(tok_cfg, "pad_token_id", 0, self.config["vocab_size"] - 1)
        self.encoder = TextEncoder(meta.get(names.TOKENIZER, ""), self.max_length, self.config["vocab_size"])
        _check_finite(model_file)
        self.executor = _executor(graph, model_file.tensors, widths, backend)
        self.backend = self.executor.backend
        self.threads = resolve_threads(threads, jit=self.backend == "numba")
        # whole batches side by side on the threads (edgebert/parallel.py); the
        # NumPy reference backend runs one batch at a time
        self._batches = BatchRunner(self.threads if self.backend != "numpy" else 1,
                                    concurrent_safe=self.backend == "native")
        if self.backend != "numpy":
            model_file.release_pages()  # the int8 weights now live packed in the executor
        self.dim = self.config["hidden_size"]
        self.head = self.description.head

    def __repr__(self) -> str:
        return (f"edgebert.Model({self.file.path}, layers={self.config['num_layers']}, dim={self.dim}, "
                f"weights={self.quantization['weights']}, threads={self.threads})")

    # ---- token ids -> hidden states ------------------------------------------
    def run(self, input_ids, attention_mask, token_type_ids=None) -> np.ndarray:
        """(B, T) ids and mask -> last_hidden_state (B, T, H) float32, as transformers returns it.

        Masked positions are never computed; their rows are zero. Positions
        are the column indices, as transformers' default ``position_ids``
        (RoBERTa's family: each token's index among its sequence's real tokens).
        """
        ids, mask, types = self._check_run_inputs(input_ids, attention_mask, token_type_ids)
        B, T = ids.shape
        rows, cols, offsets = _pack_mask(mask)
        hidden = self._forward(ids[rows, cols], types[rows, cols], self._positions(mask, rows, cols), offsets)
        out = np.zeros((B, T, self.dim), dtype=np.float32)
        out[rows, cols] = hidden
        return out

    def _positions(self, mask: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """position_ids of the kept tokens: their columns, or their index among real tokens."""
        if self.positions_by_token:
            return (np.cumsum(mask, axis=1) - 1)[rows, cols].astype(np.int32)
        return cols.astype(np.int32)

    def _check_run_inputs(self, input_ids, attention_mask, token_type_ids):
        ids = _int_array("input_ids", input_ids)
        if ids.ndim != 2 or ids.shape[0] < 1 or ids.shape[1] < 1:
            raise InputError(f"input_ids must have shape (batch, tokens), got {ids.shape}")
        mask = _int_array("attention_mask", attention_mask)
        types = np.zeros_like(ids) if token_type_ids is None else _int_array("token_type_ids", token_type_ids)
        for name, arr in (("attention_mask", mask), ("token_type_ids", types)):
            if arr.shape != ids.shape:
                raise InputError(f"{name} has shape {arr.shape}, input_ids has {ids.shape}")
        longest = int(mask.astype(bool).sum(axis=1).max()) if self.positions_by_token else ids.shape[1]
        if longest > self.max_positions:
            raise InputError(f"{longest} tokens per sequence exceed the model's {self.max_positions} positions")
        _check_range("input_ids", ids, self.config["vocab_size"])
        # a model without token types (type_vocab_size 0) takes zeros, as transformers' callers pass none
        _check_range("token_type_ids", types, max(self.config["type_vocab_size"], 1))
        _check_range("attention_mask", mask, 2)
        empty = np.flatnonzero(mask.sum(axis=1) == 0)
        if empty.size:
            raise InputError(f"attention_mask of sequence {int(empty[0])} has no 1: nothing to attend to")
        return ids.astype(np.int32), mask.astype(bool), types.astype(np.int32)

    def _forward(self, ids, types, positions, offsets, outputs=("last_hidden_state",), threads=None):
        """Packed (T,) inputs -> packed (T, H) last hidden state (a fresh array); with
        ``outputs=None`` a dict of every graph output, fresh arrays. ``threads``:
        kernel threads for this call (default: the model's)."""
        if self.type_rows is not None and len(types) and int(types.max()) >= self.type_rows:
            raise InputError(f"token type id {int(types.max())} is outside the model's {self.type_rows} token "
                             "types (a tokenizer template that does not fit this model?)")
        self.executor.set_threads(threads or self.threads)
        with kernel_guard(self.backend == "native"):  # the executor's buffers are per thread; the threading layer may not be
            out = self.executor.run(np.ascontiguousarray(ids, dtype=np.int32),
                                    np.ascontiguousarray(types, dtype=np.int32),
                                    np.ascontiguousarray(positions, dtype=np.int32),
                                    np.ascontiguousarray(offsets, dtype=np.int64), outputs=outputs)
        if outputs == ("last_hidden_state",):
            return out["last_hidden_state"].copy()
        return {name: value.copy() for name, value in out.items()}

    # ---- token ids -> every graph output (task heads) ---------------------------
    def forward(self, input_ids, attention_mask, token_type_ids=None) -> dict[str, np.ndarray]:
        """(B, T) ids and mask -> the graph's outputs in transformers' shapes.

        ``last_hidden_state`` (B, T, H); per-token head outputs (B, T, D) with
        zero rows at masked positions; per-sequence ones (``pooler_output``,
        classification ``logits``) (B, D); a QA head gives ``start_logits`` and
        ``end_logits`` (B, T) as ``BertForQuestionAnswering`` does; a replaced-token-detection head
        ``logits`` (B, T) as ``ElectraForPreTraining``.
        """
        ids, mask, types = self._check_run_inputs(input_ids, attention_mask, token_type_ids)
        B, T = ids.shape
        rows, cols, offsets = _pack_mask(mask)
        packed = self._forward(ids[rows, cols], types[rows, cols], self._positions(mask, rows, cols), offsets,
                               outputs=None)
        result = {}
        for name, value in packed.items():
            if name in self.executor.per_sequence:
                result[name] = value
            else:
                result[name] = np.zeros((B, T, value.shape[1]), dtype=np.float32)
                result[name][rows, cols] = value
        if "qa_logits" in result:
            qa = result.pop("qa_logits")
            result["start_logits"], result["end_logits"] = qa[..., 0].copy(), qa[..., 1].copy()
        if "rtd_logits" in result:  # ELECTRA's discriminator: (B, T), as ElectraForPreTraining's logits
            result["logits"] = result.pop("rtd_logits")[..., 0].copy()
        return result

    def forward_sequences(self, encoded: list, outputs=None, batch_size: int = 32) -> list[dict]:
        """Tokenized sequences [(ids, type_ids), ...] -> per sequence a dict of its outputs:
        (L, D) for per-token values, (D,) for per-sequence ones. Batched by length inside."""
        results: list[dict] = [{} for _ in encoded]
        longest = max((len(ids) for ids, _ in encoded), default=0)
        if longest > self.max_positions:
            raise InputError(f"a sequence of {longest} tokens exceeds the model's {self.max_positions} positions")

        def work(batch, threads):
            packed = pack_sequences([encoded[i] for i in batch])
            offsets = packed[3]
            out = self._forward(*packed, outputs=outputs, threads=threads)
            for name, value in out.items():
                per_seq = name in self.executor.per_sequence
                for j, i in enumerate(batch):
                    results[i][name] = value[j] if per_seq else value[offsets[j]:offsets[j + 1]]

        self._batches.run(list(_length_sorted_batches(encoded, batch_size)), work)
        return results

    # ---- texts -> sentence embeddings ----------------------------------------
    def tokenize(self, texts: Sequence, truncate: bool = True, first_index: int = 0):
        return self.encoder.encode([as_text(t, first_index + i) for i, t in enumerate(texts)],
                                   first_index=first_index, truncate=truncate)

    def embed(self, texts: Iterable, batch_size: int = 32, truncate: bool = True) -> np.ndarray:
        """Texts -> (n, dim) float32 sentence embeddings, pooled (and normalised) as the source model."""
        if isinstance(texts, (str, bytes)):
            raise InputError("embed() takes a list of texts; wrap a single text in a list")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
        parts, done = [], 0
        for chunk in chunks(texts, TOKENIZE_CHUNK):
            parts.append(self._embed_encoded(self.tokenize(chunk, truncate, done), batch_size))
            done += len(chunk)
        if not parts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def rerank(self, query: str, documents: Sequence[str], top_k: int | None = None, **options) -> list[dict]:
        """A cross-encoder's ranking of ``documents`` for ``query``, best first: [{"corpus_id", "score"}]
        (sentence-transformers' CrossEncoder.rank; options: those of the text-ranking pipeline)."""
        from .pipelines import pipeline

        return pipeline("text-ranking", self)({"query": query, "documents": list(documents)}, top_k=top_k,
                                              **options)

    def embed_tokenized(self, encoded: list, batch_size: int = 32) -> np.ndarray:
        """``embed`` after ``tokenize``: a caller may tokenize the next texts on another thread meanwhile."""
        if not encoded:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._embed_encoded(encoded, batch_size)

    def _embed_encoded(self, encoded: list, batch_size: int) -> np.ndarray:
        out = np.empty((len(encoded), self.dim), dtype=np.float32)

        def work(batch, threads):  # batches write disjoint rows of out
            packed = pack_sequences([encoded[i] for i in batch])
            offsets = packed[3]
            hidden = self._forward(*packed, threads=threads)
            for j, i in enumerate(batch):
                out[i] = self._pool(hidden[offsets[j]:offsets[j + 1]])

        self._batches.run(list(_length_sorted_batches(encoded, batch_size)), work)
        return out

    def _pool(self, rows: np.ndarray) -> np.ndarray:
        """One sequence's (L, H) hidden states -> (H,) embedding."""
        mode = self.pooling["mode"]
        if mode == "mean":
            v = rows.mean(axis=0, dtype=np.float64).astype(np.float32)
        elif mode == "cls":
            v = rows[0].copy()
        else:
            v = rows.max(axis=0)
        if self.pooling.get("normalize"):
            v /= max(float(np.linalg.norm(v)), 1e-12)  # as torch.nn.functional.normalize
        return v

    # ---- verification: every layer's hidden states --------------------------------
    def layer_names(self) -> list[str]:
        """Graph values holding the hidden states: h0 (embeddings), h1.., last_hidden_state (docs/format.md)."""
        return [f"h{i}" for i in range(self.config["num_layers"])] + ["last_hidden_state"]

    def _packed_inputs(self, ids: np.ndarray, lengths: np.ndarray):
        offsets, positions = offsets_and_positions(lengths)
        return np.asarray(ids, np.int32), np.zeros(len(ids), np.int32), positions, offsets

    def hidden_states_packed(self, ids: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
        """Packed token ids of sequences with ``lengths`` -> [(T, H)] per layer, embeddings first."""
        out = self._forward(*self._packed_inputs(ids, lengths), outputs=self.layer_names())
        return [out[name] for name in self.layer_names()]

    def pool_packed_ids(self, ids: np.ndarray, lengths: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Packed token ids -> (n, H) pooled embeddings, batch by batch."""
        offsets = offsets_and_positions(lengths)[0]
        out = np.empty((len(lengths), self.dim), dtype=np.float32)
        for s in range(0, len(lengths), batch_size):
            e = min(s + batch_size, len(lengths))
            hidden = self._forward(*self._packed_inputs(ids[offsets[s]:offsets[e]], lengths[s:e]))
            local = offsets[s:e + 1] - offsets[s]
            for j in range(e - s):
                out[s + j] = self._pool(hidden[local[j]:local[j + 1]])
        return out

    def info(self) -> dict:
        return {"path": str(self.file.path), "config": self.config, "quantization": self.quantization,
                "pooling": self.pooling, "max_length": self.max_length,
                "report": json.loads(self.file.metadata.get(names.REPORT, "{}"))}


def _pack_mask(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(B, T) bool mask -> rows, cols of kept tokens (row-major: sequence by sequence) and seq_offsets."""
    rows, cols = np.nonzero(mask)
    offsets = np.zeros(mask.shape[0] + 1, dtype=np.int64)
    np.cumsum(mask.sum(axis=1), out=offsets[1:])
    return rows, cols, offsets


def _length_sorted_batches(encoded: list, batch_size: int):
    """Index lists of at most batch_size sequences, similar lengths together."""
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]


def _check_finite(model_file) -> None:
    """A NaN or infinite weight would make every answer silently wrong: refuse the file."""
    for name, value in model_file.tensors.items():
        if value.dtype == np.float32 and not np.isfinite(value).all():
            raise InvalidModelFile(f"{model_file.path}: tensor {name} holds NaN or infinite values")


def _int_array(name: str, value) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype == bool and name == "attention_mask":
        return arr.astype(np.int32)
    if not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"{name} must hold integers, got dtype {arr.dtype}")
    return arr


def _check_range(name: str, arr: np.ndarray, upper: int) -> None:
    bad = np.argwhere((arr < 0) | (arr >= upper))
    if bad.size:
        where = tuple(int(i) for i in bad[0])
        raise InputError(f"{name}{list(where)} = {int(arr[where])} is outside 0..{upper - 1}")


def _bounded_int(cfg: dict, key: str, low: int, high: int) -> int:
    value = cfg.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidModelFile(f"tokenizer_config {key}={value!r} is outside {low}..{high}")
    return value
