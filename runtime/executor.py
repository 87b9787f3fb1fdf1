"""Runs a graph (docs/format.md) over packed activations with kernels chosen per op.

Two backends: ``"numba"`` (the fast kernels) and ``"numpy"`` (the references;
with a float32 file this is the FP32 baseline). Weights are prepared once at
load (int8 weights packed for the GEMM); activation buffers are allocated per
row capacity and reused, so a steady stream of batches allocates nothing here.
Buffers belong to the calling thread (``_Workspace``): threads may run one
executor at the same time, each on its own batches.
"""
from __future__ import annotations

import threading
from typing import Callable

import numpy as np

from edgebert.errors import InvalidModelFile

from . import reference as ref

BACKENDS = ("numba", "numpy")


class Executor:
    def __init__(self, graph: dict, tensors: dict[str, np.ndarray], backend: str = "numba"):
        if backend not in BACKENDS:
            raise ValueError(f"backend {backend!r} is not one of {BACKENDS}")
        self.backend = backend
        self.tensors = dict(tensors)  # own mapping: head binders add aliases (tied weights)
        self.outputs = list(graph["outputs"])
        self.width: dict[str, int] = {}  # value name -> row width D
        self.per_sequence: set[str] = set()  # values with one row per sequence (B, D), not per token
        self.produced_at: dict[str, int] = {}  # value name -> index of the step that writes it
        self.steps: list[Callable[[dict], None]] = []
        self.io: list[tuple[list[str], list[str]]] = []  # (inputs, outputs) per step, for buffer planning
        self._packed: dict = {}  # output value -> PackedLinear of an int8-weight linear (numba backend)
        self._two_pass: set[str] = set()  # ... of those, the ones run as qlinear_int16
        for node in graph["nodes"]:
            self.steps.append(self._bind(node))
            self.io.append((list(node["inputs"]), list(node["outputs"])))
            if node["op"] == "first_token" or any(i in self.per_sequence for i in node["inputs"]):
                self.per_sequence.update(node["outputs"])
            self.produced_at.update((name, len(self.steps) - 1) for name in node["outputs"])
        # The same graph with each feed-forward block as one fused step (_fuse);
        # used unless a run asks for a value that only exists inside a fused block.
        self.fused_steps, self.fused_io, self.fused_away = self._fuse(graph["nodes"])
        self._plans: dict[tuple, dict[str, int]] = {}  # wanted outputs -> value -> slot (shared)
        self._local = threading.local()  # .ws: the calling thread's _Workspace

    # ---- binding: one closure per node, over prepared weights -------------
    def _bind(self, node: dict) -> Callable[[dict], None]:
        op = node["op"]
        if op == "linear" and node["attrs"].get("activation") == "tanh":
            op = "tanh_linear"  # the pooler; the int8 GEMM has no tanh epilogue
        binder = getattr(self, f"_bind_{op}", None)
        if binder is None:
            raise InvalidModelFile(f"graph op {op!r} is not supported by this runtime")
        return binder(node)

    def _t(self, name: str) -> np.ndarray:
        try:
            return self.tensors[name]
        except KeyError:
            raise InvalidModelFile(f"graph references missing tensor {name!r}") from None

    def _bind_embed(self, node):
        p, eps = node["params"], float(node["attrs"]["eps"])
        word = self._t(p["word"] + ".weight")
        scale = self.tensors.get(p["word"] + ".scale")
        pos, typ = self._t(p["position"] + ".weight"), self._t(p["token_type"] + ".weight")
        g, b = self._t(p["norm"] + ".weight"), self._t(p["norm"] + ".bias")
        (out_name,) = node["outputs"]
        self.width[out_name] = word.shape[1]
        if self.backend == "numpy":
            def step(v):
                v[out_name] = ref.embed_ref(v["input_ids"], v["token_type_ids"], v["position_ids"],
                                            word, scale, pos, typ, g, b, eps)
            return step
        from .kernels.norm import embed
        scale = scale if scale is not None else np.ones(word.shape[0], dtype=np.float32)

        def step(v):
            out = self._buffer(out_name, len(v["input_ids"]))
            embed(v["input_ids"], v["token_type_ids"], v["position_ids"], word, scale, pos, typ, g, b, eps, out)
            v[out_name] = out
        return step

    def _bind_linear(self, node):
        prefix, act = node["params"]["linear"], node["attrs"].get("activation", "none")
        if act not in ("none", "gelu"):
            raise InvalidModelFile(f"linear {prefix}: activation {act!r} is not supported")
        w, bias = self._t(prefix + ".weight"), self._t(prefix + ".bias")
        scale = self.tensors.get(prefix + ".scale")
        input_scale = self.tensors.get(prefix + ".input_scale")  # SmoothQuant: x * input_scale, then quantize
        (x_name,), (out_name,) = node["inputs"], node["outputs"]
        self.width[out_name] = w.shape[0]
        if w.dtype == np.float32 or node["attrs"].get("activations") == "float32":
            w = _effective_float_weight(w, scale, input_scale)  # kept in higher precision: float activations

            def step(v):
                v[out_name] = ref.linear_f32_ref(v[x_name], w, bias, act)
            return step
        int16 = node["attrs"].get("activations") == "int16"  # two int8 passes (gemm.qlinear_int16)
        if self.backend == "numpy":
            from .kernels.gemm_ref import qlinear_int16_ref, qlinear_ref
            ref_linear = qlinear_int16_ref if int16 else qlinear_ref

            def step(v):
                v[out_name] = ref_linear(v[x_name], w, scale, bias, act, input_scale=input_scale)
            return step
        from .kernels import gemm
        packed = gemm.pack_linear(w, scale, bias, input_scale=input_scale)
        self._packed[out_name] = packed  # for the fusion pass
        if int16:
            self._two_pass.add(out_name)
            residual = gemm.residual_pass(packed)

            def step(v):
                x = v[x_name]
                v[out_name] = gemm.qlinear_int16(x, packed, residual, out=self._buffer(out_name, x.shape[0]),
                                                 activation=act)
            return step

        def step(v):
            x = v[x_name]
            v[out_name] = gemm.qlinear(x, packed, out=self._buffer(out_name, x.shape[0]), activation=act)
        return step

    def _bind_attention(self, node):
        heads = int(node["attrs"]["num_heads"])
        (qkv_name, off_name), (out_name,) = node["inputs"], node["outputs"]
        self.width[out_name] = self.width[qkv_name] // 3
        if self.backend == "numpy":
            def step(v):
                v[out_name] = ref.attention_ref(v[qkv_name], v[off_name], heads)
            return step
        from .kernels.attention import attention, make_scratch, scratch_size

        head_dim = self.width[out_name] // heads

        def step(v):
            qkv, offsets = v[qkv_name], v[off_name]
            ws = self._workspace()
            scratch = ws.attention_scratch.get(head_dim)
            if scratch is None or scratch.shape[1] < scratch_size(ws.longest, head_dim):
                scratch = ws.attention_scratch[head_dim] = make_scratch(max(ws.longest, 128), head_dim)
            out = self._buffer(out_name, qkv.shape[0])
            attention(qkv, offsets, heads, out, scratch)
            v[out_name] = out
        return step

    def _bind_add_norm(self, node):
        p, eps = node["params"]["norm"], float(node["attrs"]["eps"])
        g, b = self._t(p + ".weight"), self._t(p + ".bias")
        (x_name, r_name), (out_name,) = node["inputs"], node["outputs"]
        self.width[out_name] = self.width[x_name]
        if self.backend == "numpy":
            def step(v):
                v[out_name] = ref.add_norm_ref(v[x_name], v[r_name], g, b, eps)
            return step
        from .kernels.norm import add_norm

        def step(v):
            x = v[x_name]
            out = self._buffer(out_name, x.shape[0])
            add_norm(x, v[r_name], g, b, eps, out)
            v[out_name] = out
        return step

    # ---- fusion: the feed-forward block as one row-panel kernel ------------
    def _fuse(self, nodes):
        """(steps, io, values they no longer produce), with each feed-forward block,
        up (int8 linear + GELU) -> down (int8 or int16-activation linear) ->
        add_norm with the residual, as one ``gemm.ffn`` step where the kernel
        path has one and the intermediates are read by nothing else and are
        not graph outputs. Otherwise the lists equal the unfused ones.

        (The attention output, linear -> add_norm, fused the same way, was
        within +-3 % of unfused on MiniLM at 1 and 2 threads: not kept.)
        """
        steps, io, away = list(self.steps), list(self.io), set()
        if self.backend != "numba":
            return steps, io, away
        readers: dict[str, int] = {}
        for node in nodes:
            for name in node["inputs"]:
                readers[name] = readers.get(name, 0) + 1
        outputs = set(self.outputs)

        def private(value, reader):  # read only by ``reader``, not a graph output, a fusable int8 linear's
            return (reader["inputs"][0] == value and readers.get(value) == 1 and value not in outputs
                    and value in self._packed and hasattr(self._packed[value].kernels, "ffn_kernel"))

        def plain_linear(node, activation):
            return node["op"] == "linear" and node["attrs"].get("activation", "none") == activation

        matches, i = [], 0  # (first node index, fused step, values only it holds)
        while i < len(nodes) - 2:
            a, b, c = nodes[i:i + 3]
            if (c["op"] == "add_norm" and plain_linear(a, "gelu") and plain_linear(b, "none")
                    and private(a["outputs"][0], b) and private(b["outputs"][0], c)
                    and a["outputs"][0] not in self._two_pass):
                h, d = a["outputs"][0], b["outputs"][0]
                matches.append((i, self._bind_ffn(a, c, self._packed[h], self._packed[d], d in self._two_pass,
                                                  self.steps[i:i + 3]), [h, d]))
                i += 3
            else:
                i += 1
        for i, step, inner in reversed(matches):  # from the end, so earlier indices stay valid
            norm = nodes[i + 2]
            steps[i:i + 3] = [step]
            # the intermediates stay listed: they get (lazily allocated) slots for the unfused fallback
            io[i:i + 3] = [([nodes[i]["inputs"][0], norm["inputs"][1]], list(norm["outputs"]) + inner)]
            away.update(inner)
        return steps, io, away

    def _bind_ffn(self, up_node, norm_node, up, down, two_pass, unfused):
        """One step for a feed-forward block: ``gemm.ffn``, or the unfused steps where
        the input has too few rows for one panel per thread."""
        import numba

        from .kernels import gemm

        p, eps = norm_node["params"]["norm"], float(norm_node["attrs"]["eps"])
        g, b = self._t(p + ".weight"), self._t(p + ".bias")
        (x_name,), r_name, (out_name,) = up_node["inputs"], norm_node["inputs"][1], norm_node["outputs"]

        def step(v):
            x = v[x_name]
            panel = gemm.panel_rows((up, down), x.shape[0], numba.get_num_threads())
            if not panel:
                for s in unfused:
                    s(v)
                return
            v[out_name] = gemm.ffn(x, up, down, v[r_name], g, b, eps, self._buffer(out_name, x.shape[0]), panel,
                                   two_pass)
        return step

    # ---- task heads (docs/format.md, "Heads") ------------------------------
    def _bind_tanh_linear(self, node):
        linear = self._bind_linear({**node, "attrs": {**node["attrs"], "activation": "none"}})
        (out_name,) = node["outputs"]
        if self.backend == "numpy":
            def step(v):
                linear(v)
                v[out_name] = ref.tanh_ref(v[out_name])
            return step

        def step(v):
            linear(v)
            np.tanh(v[out_name], out=v[out_name])
        return step

    def _bind_first_token(self, node):
        (x_name, off_name), (out_name,) = node["inputs"], node["outputs"]
        self.width[out_name] = self.width[x_name]
        if self.backend == "numpy":
            def step(v):
                v[out_name] = ref.first_token_ref(v[x_name], v[off_name])
            return step

        def step(v):
            starts = v[off_name][:-1]
            v[out_name] = np.take(v[x_name], starts, axis=0, out=self._buffer(out_name, len(starts)))
        return step

    def _bind_norm(self, node):
        p, eps = node["params"]["norm"], float(node["attrs"]["eps"])
        g, b = self._t(p + ".weight"), self._t(p + ".bias")
        (x_name,), (out_name,) = node["inputs"], node["outputs"]
        self.width[out_name] = self.width[x_name]
        if self.backend == "numpy":
            def step(v):
                v[out_name] = ref.layernorm_ref(v[x_name], g, b, eps)
            return step
        from .kernels.heads import layer_norm

        def step(v):
            x = v[x_name]
            out = self._buffer(out_name, x.shape[0])
            layer_norm(x, g, b, eps, out)
            v[out_name] = out
        return step

    def _bind_tied_linear(self, node):
        """A linear layer whose weight is another layer's (the MLM decoder reads token_embd)."""
        wp, bp = node["params"]["weight"], node["params"]["bias"]
        alias = f"{node['outputs'][0]}@tied"
        self.tensors[alias + ".weight"] = self._t(wp + ".weight")
        self.tensors[alias + ".bias"] = self._t(bp + ".bias")
        if wp + ".scale" in self.tensors:
            self.tensors[alias + ".scale"] = self.tensors[wp + ".scale"]
        return self._bind_linear({**node, "op": "linear", "params": {"linear": alias},
                                  "attrs": {"activation": "none"}})

    # ---- running ----------------------------------------------------------
    def _workspace(self) -> "_Workspace":
        ws = getattr(self._local, "ws", None)
        if ws is None:
            ws = self._local.ws = _Workspace()
        return ws

    def _buffer(self, name: str, rows: int) -> np.ndarray:
        """A reusable (rows, D) view of the value's slot; slots grow to the largest batch seen."""
        ws = self._workspace()
        if rows > ws.capacity:
            ws.capacity = max(rows, 2 * ws.capacity)
            ws.buffers = {}
        key = (ws.plan[name], self.width[name])
        buf = ws.buffers.get(key)
        if buf is None:
            buf = ws.buffers[key] = np.empty((ws.capacity, self.width[name]), dtype=np.float32)
        return buf[:rows]

    def _slots(self, wanted: tuple[str, ...], io) -> dict[str, int]:
        """Value -> buffer slot, reusing a slot of the same width once its value is dead.

        A value lives from the step that writes it to the last step that reads
        it (the wanted outputs: to the end), so a step's output never shares
        memory with its inputs, and a forward pass needs a few slots per width
        instead of one buffer per value of every layer.
        """
        key = (wanted, io is self.fused_io)
        plan = self._plans.get(key)
        if plan is not None:
            return plan
        last_use = {name: i for i, (inputs, _) in enumerate(io) for name in inputs}
        last_use.update((name, len(io)) for name in wanted)
        plan, free, live, slots = {}, {}, [], 0
        for i, (_, outputs) in enumerate(io):
            for name in [n for n in live if last_use.get(n, -1) < i]:
                live.remove(name)
                free.setdefault(self.width[name], []).append(plan[name])
            for name in outputs:
                if name not in self.width:
                    continue  # written without a pooled buffer
                pool = free.get(self.width[name])
                if pool:
                    plan[name] = pool.pop()
                else:
                    plan[name], slots = slots, slots + 1
                live.append(name)
        self._plans[key] = plan
        return plan

    def run(self, input_ids, token_type_ids, position_ids, seq_offsets, outputs=None) -> dict[str, np.ndarray]:
        """Packed int32 inputs (T,), (T,), (T,), (B+1,) -> the graph outputs, (T, D) each
        ((B, D) for those in ``per_sequence``).

        ``outputs``: names to compute (default all); steps after the last of
        them are skipped, so embedding a text never runs an MLM decoder.
        Returned arrays are views of the calling thread's reused buffers: copy
        before that thread's next call.
        """
        names = self.outputs if outputs is None else list(outputs)
        unknown = [n for n in names if n not in self.produced_at]  # intermediates may be asked for too
        if unknown:
            raise ValueError(f"graph has no value {unknown[0]!r}; outputs: {self.outputs}")
        steps, io = (self.steps, self.io) if self.fused_away.intersection(names) else (self.fused_steps, self.fused_io)
        last = max(i for i, (_, outs) in enumerate(io) if set(outs).intersection(names))
        ws = self._workspace()
        ws.plan = self._slots(tuple(sorted(names)), io)
        values = {"input_ids": input_ids, "token_type_ids": token_type_ids,
                  "position_ids": position_ids, "seq_offsets": seq_offsets}
        ws.longest = int((seq_offsets[1:] - seq_offsets[:-1]).max()) if len(seq_offsets) > 1 else 0
        for step in steps[:last + 1]:
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


def _effective_float_weight(w, scale, input_scale):
    """The float32 (N, K) weight a float-activation linear multiplies by: dequantized, smoothing folded in."""
    if w.dtype == np.int8:
        w = w.astype(np.float32) * scale[:, None]
    if input_scale is not None:
        w = w * input_scale[None, :]
    return np.ascontiguousarray(w, dtype=np.float32)


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
