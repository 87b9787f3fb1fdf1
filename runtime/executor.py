"""Runs a validated graph (docs/format.md) over packed activations: a thin loop over steps.

Each node is bound once, at load, to its backend's implementation of the op
(``runtime/backend_numpy.py``: the NumPy references, with a float32 file the
FP32 baseline; ``runtime/backend_numba.py``: the fast kernels, with the
feed-forward fusion of ``runtime/fusion.py``). Activation buffers are planned
by ``runtime/plan.py``, allocated per row capacity and reused, so a steady
stream of batches allocates nothing here. Buffers belong to the calling thread
(``_Workspace``): threads may run one executor at the same time, each on its
own batches.
"""
from __future__ import annotations

import threading
from typing import Callable

import numpy as np

from edgebert.errors import InvalidModelFile
from edgebert.ops import GRAPH_INPUTS, per_sequence_values

from . import backend_numba, backend_numpy, fusion, plan

# "native": the numba backend's binders over the ahead-of-time library (runtime/native), same results
BACKENDS = {"numba": backend_numba.BINDERS, "numpy": backend_numpy.BINDERS, "native": backend_numba.BINDERS}


class NativeUnsupported(Exception):
    """The graph has an op the native library does not run (the caller falls back to the JIT)."""


class Executor:
    def __init__(self, graph: dict, tensors: dict[str, np.ndarray], widths: dict[str, int],
                 backend: str = "numba", native=None):
        """``widths``: each activation's row width, as ``edgebert.format.validate_graph`` returns them.
        ``native``: the library (runtime/native/library.NativeKernels) the "native" backend calls."""
        if backend not in BACKENDS:
            raise ValueError(f"backend {backend!r} is not one of {tuple(BACKENDS)}")
        if (backend == "native") != (native is not None):
            raise ValueError("the native backend, and only it, takes a native library")
        if native is not None:
            missing = sorted({n["op"] for n in graph["nodes"] if not backend_numba.native_supports(n)})
            if missing:
                raise NativeUnsupported(f"ops {missing} are not in the native library")
        binders = BACKENDS[backend]
        self.backend = backend
        self.native = native
        self.kernel_threads = native.max_threads if native is not None else None  # per-thread scratch rows
        self.tensors = dict(tensors)  # own mapping: head binders add aliases (tied weights)
        self.outputs = list(graph["outputs"])
        self.width = dict(widths)  # value name -> row width D
        self.per_sequence = per_sequence_values(graph["nodes"])  # values with one row per sequence (B, D)
        self.packed: dict = {}  # output value -> PackedLinear of an int8-weight linear (numba backend)
        self.two_pass: set[str] = set()  # ... of those, the ones run as qlinear_int16
        self.derived: dict = {}  # values derived from tensors once and shared by nodes (relative bias by distance)
        self.steps: list[Callable[[dict], None]] = []
        self.io: list[tuple[list[str], list[str]]] = []  # (inputs, outputs) per step, for buffer planning
        for node in graph["nodes"]:
            binder = binders.get(node["op"])
            if binder is None:
                raise InvalidModelFile(f"graph op {node['op']!r} has no {backend} implementation")
            self.steps.append(binder(node, self))
            self.io.append((list(node["inputs"]), list(node["outputs"])))

        self.produced = {name for _, outs in self.io for name in outs}
        # The same graph with each feed-forward block as one fused step; used
        # unless a run asks for a value that only exists inside a fused block.
        self.fused_steps, self.fused_io, self.fused_away = (
            fusion.fuse(graph["nodes"], self.steps, self.io, self.outputs, self) if backend == "numba"
            else (list(self.steps), list(self.io), set()))
        self._plans: dict[tuple, dict[str, int]] = {}  # (wanted outputs, fused?) -> value -> slot (shared)
        self._local = threading.local()  # .ws: the calling thread's _Workspace

    # ---- what binders use -------------------------------------------------
    def kernel(self, module: str, name: str):
        """The kernel ``name`` of ``runtime/kernels/<module>.py``: the Numba dispatcher, or the native library's."""
        if self.native is not None:
            return getattr(self.native, name)
        import importlib

        return getattr(importlib.import_module(f"edgebert.runtime.kernels.{module}"), name)

    def set_threads(self, threads: int) -> None:
        """Kernel threads for the calling thread's next forwards."""
        if self.native is not None:
            self.native.set_num_threads(threads)
        else:
            import numba

            numba.set_num_threads(threads)

    def tensor(self, name: str) -> np.ndarray:
        try:
            return self.tensors[name]
        except KeyError:
            raise InvalidModelFile(f"graph references missing tensor {name!r}") from None

    def workspace(self) -> "_Workspace":
        ws = getattr(self._local, "ws", None)
        if ws is None:
            ws = self._local.ws = _Workspace()
        return ws

    def buffer(self, name: str, rows: int) -> np.ndarray:
        """A reusable (rows, D) view of the value's slot; slots grow to the largest batch seen."""
        ws = self.workspace()
        if rows > ws.capacity:
            ws.capacity = max(rows, 2 * ws.capacity)
            ws.buffers = {}
        key = (ws.plan[name], self.width[name])
        buf = ws.buffers.get(key)
        if buf is None:
            buf = ws.buffers[key] = np.empty((ws.capacity, self.width[name]), dtype=np.float32)
        return buf[:rows]

    # ---- running ----------------------------------------------------------
    def run(self, input_ids, token_type_ids, position_ids, seq_offsets, outputs=None) -> dict[str, np.ndarray]:
        """Packed int32 inputs (T,), (T,), (T,), (B+1,) -> the graph outputs, (T, D) each
        ((B, D) for those in ``per_sequence``).

        ``outputs``: names to compute (default all); steps after the last of
        them are skipped, so embedding a text never runs an MLM decoder.
        Returned arrays are views of the calling thread's reused buffers: copy
        before that thread's next call.
        """
        names = self.outputs if outputs is None else list(outputs)
        unknown = [n for n in names if n not in self.produced]  # intermediates may be asked for too
        if unknown:
            raise ValueError(f"graph has no value {unknown[0]!r}; outputs: {self.outputs}")
        fused = not self.fused_away.intersection(names)
        steps, io = (self.fused_steps, self.fused_io) if fused else (self.steps, self.io)
        ws = self.workspace()
        key = (tuple(sorted(names)), fused)
        if key not in self._plans:
            self._plans[key] = plan.slot_plan(io, self.width, key[0])
        ws.plan = self._plans[key]
        values = dict(zip(GRAPH_INPUTS, (input_ids, token_type_ids, position_ids, seq_offsets)))
        ws.longest = int((seq_offsets[1:] - seq_offsets[:-1]).max()) if len(seq_offsets) > 1 else 0
        for step in steps[:plan.last_step(io, names) + 1]:
            step(values)
        return {name: values[name] for name in names}


class _Workspace:
    """One thread's run state: activation buffers, the current run's slot plan and longest sequence."""

    def __init__(self):
        self.capacity = 0  # rows every buffer holds
        # (slot, width) -> (capacity, width) array: plans for other outputs, or the
        # fused and unfused step lists, may give one slot number other widths
        self.buffers: dict[tuple[int, int], np.ndarray] = {}
        self.plan: dict[str, int] = {}
        self.longest = 0  # longest sequence of the current run (attention scratch size)
        self.attention_scratch: dict[int, np.ndarray] = {}  # head_dim -> per-kernel-thread scratch


def offsets_and_positions(lengths) -> tuple[np.ndarray, np.ndarray]:
    """Sequence lengths -> seq_offsets (B+1,) int64 and position_ids (T,) int32 (0.. within each)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    positions = (np.arange(offsets[-1], dtype=np.int64) - np.repeat(offsets[:-1], lengths)).astype(np.int32)
    return offsets, positions


def pack_sequences(seqs) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """[(ids, type_ids), ...] -> the packed graph inputs: input_ids, token_type_ids, position_ids, seq_offsets."""
    offsets, positions = offsets_and_positions([len(ids) for ids, _ in seqs])
    ids = np.concatenate([ids for ids, _ in seqs]).astype(np.int32)
    types = np.concatenate([types for _, types in seqs]).astype(np.int32)
    return ids, types, positions, offsets
