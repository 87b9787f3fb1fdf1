"""The op schema: every graph op declared once, as data (docs/format.md, "Graph").

Per op: its version, typed input ports, the tensor roles it reads (params,
each a tensor name prefix), attribute checkers, whether its output has one row
per sequence, the ONNX op types it may be lowered from, and a rule that checks
its tensors and infers its output width. Graph validation
(``edgebert.format.validate_graph``) only walks this table; each runtime
backend registers one implementation per op here (``runtime/backend_*.py``), and a
test fails when an op lacks one or a NumPy reference. No numpy or numba here:
the schema is importable anywhere, cheaply.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping

from edgebert import names

# Input port kinds. ``ids``: a per-token integer graph input (input_ids ...);
# ``offsets``: the graph input seq_offsets (B+1,); ``rows``: an activation, one
# row per token or, downstream of a per-sequence op, one per sequence.
IDS, OFFSETS, ROWS = "ids", "offsets", "rows"
OFFSETS_INPUT = "seq_offsets"
GRAPH_INPUTS = ("input_ids", "token_type_ids", "position_ids", OFFSETS_INPUT)
NO_WIDTH = None  # the width of a graph input: it is not an activation

# header dtype names, by numpy dtype name (any byte order: the reader has normalised it)
_DTYPE_NAMES = {"float32": "F32", "int32": "I32", "int8": "I8"}


def show(value: Any, limit: int = 80) -> str:
    """repr for messages, shortened: a hostile header must not make a 100 MB error message."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def is_int(value: Any) -> bool:
    """JSON ints only: bool is an int subclass in Python but not a size."""
    return isinstance(value, int) and not isinstance(value, bool)


def positive_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def positive_int(value: Any) -> bool:
    return is_int(value) and value > 0


def non_negative_int(value: Any) -> bool:
    return is_int(value) and value >= 0


@dataclasses.dataclass(frozen=True)
class Attr:
    """An attribute: its checker, the values it allows (for docs and errors), whether it may be absent."""

    check: Callable[[Any], bool]
    choices: tuple[str, ...] = ()
    optional: bool = False


def choice(*choices: str, optional: bool = False) -> Attr:
    return Attr(lambda value: value in choices, choices, optional)


EPS = Attr(positive_number)


@dataclasses.dataclass(frozen=True)
class OpSchema:
    """One op. ``infer(node, ctx)`` checks the node's tensors and input widths
    (``node["_widths"]``) and returns its output widths; it raises ``ValueError``
    with a message, which validation turns into an error naming the node."""

    version: int
    inputs: tuple[str, ...]  # port kinds, in order
    params: tuple[str, ...]  # tensor roles -> name prefixes
    attrs: Mapping[str, Attr]
    infer: Callable[[dict, "GraphContext"], list]
    per_sequence: bool = False  # its output has one row per sequence (B, D), whatever its inputs
    n_outputs: int = 1
    onnx: tuple[str, ...] = ()  # ONNX op types this op can be lowered from (the ONNX converter's table)
    optional_params: tuple[str, ...] = ()  # params a node may leave out (embed without token types)

    @property
    def n_inputs(self) -> int:
        return len(self.inputs)

    @property
    def optional(self) -> tuple[str, ...]:
        return tuple(name for name, attr in self.attrs.items() if attr.optional)

    def params_ok(self, params: Any) -> bool:
        """Exactly the declared params, less any optional ones, each a tensor name prefix."""
        return (isinstance(params, dict) and set(self.params) - set(self.optional_params) <= set(params)
                <= set(self.params) and all(isinstance(v, str) and v for v in params.values()))


@dataclasses.dataclass
class GraphContext:
    """What an op's rule may look at: tensor shapes and dtypes, and the model config."""

    tensors: Mapping[str, Any]
    config: Mapping[str, Any]

    def cfg(self, key: str) -> int:
        value = self.config.get(key)
        if not positive_int(value):
            raise ValueError(f"config {show(key)} must be a positive integer, got {show(value)}")
        return value

    def shape(self, name: str) -> tuple[int, ...]:
        if name not in self.tensors:
            raise ValueError(f"tensor {show(name)} is absent")
        value = self.tensors[name]
        try:
            return tuple(int(d) for d in getattr(value, "shape", value))
        except (TypeError, ValueError):
            raise ValueError(f"tensor {show(name)} has no usable shape ({show(value)})") from None

    def expect(self, name: str, shape: tuple[int, ...], dtypes: tuple[str, ...] = ("F32",)) -> None:
        if self.shape(name) != shape:
            raise ValueError(f"tensor {show(name)} has shape {self.shape(name)}, expected {shape}")
        dtype = self.dtype(name)
        if dtype is not None and dtype not in dtypes:
            raise ValueError(f"tensor {show(name)} has dtype {dtype}, expected {' or '.join(dtypes)}")

    def dtype(self, name: str) -> str | None:
        """The header dtype name when the caller gave dtypes (arrays, TensorInfo); None for bare shapes."""
        dtype = getattr(self.tensors[name], "dtype", None)
        if dtype is None or isinstance(dtype, str):
            return dtype
        return _DTYPE_NAMES.get(getattr(dtype, "name", None), str(dtype))

    def weight(self, prefix: str, rows: int | None, cols: int | None, bias: bool) -> tuple[int, int]:
        """``prefix.weight`` (N, K) F32 or I8, ``.scale`` (N,) iff I8, ``.bias`` (N,) when asked."""
        name = prefix + names.WEIGHT
        shape = self.shape(name)
        if len(shape) != 2 or (rows is not None and shape[0] != rows) or (cols is not None and shape[1] != cols):
            raise ValueError(f"tensor {show(name)} has shape {shape}, expected ({rows or 'N'}, {cols or 'K'})")
        self.expect(name, shape, ("F32", "I8"))
        quantized = {"I8": True, None: None}.get(self.dtype(name), False)
        if quantized is True or (quantized is None and prefix + names.SCALE in self.tensors):
            self.expect(prefix + names.SCALE, shape[:1])
        elif prefix + names.SCALE in self.tensors:
            raise ValueError(f"tensor {show(prefix + names.SCALE)} present but {show(name)} is not int8")
        if bias:
            self.expect(prefix + names.BIAS, shape[:1])
        return shape

    def norm(self, prefix: str, width: int | None = None) -> None:
        """``prefix.weight`` and ``.bias`` (width,) F32; width defaults to hidden_size."""
        width = width or self.cfg("hidden_size")
        self.expect(prefix + names.WEIGHT, (width,))
        self.expect(prefix + names.BIAS, (width,))

    def embedding_width(self) -> int:
        """Width of the embedding tables: config embedding_size when set (ALBERT, ELECTRA), else hidden_size."""
        return self.cfg("embedding_size") if self.config.get("embedding_size") is not None else self.cfg("hidden_size")


# ------------------------------------------------------------ the ops' rules


def _embed(node: dict, ctx: GraphContext) -> list:
    width, params, attrs = ctx.embedding_width(), node["params"], node["attrs"]
    ctx.weight(params["word"], ctx.cfg("vocab_size"), width, bias=False)
    if "position" in params:  # absent: positions are applied elsewhere (a rotary node); position ids unused
        rows = ctx.cfg("max_position_embeddings")
        ctx.expect(params["position"] + names.WEIGHT, (rows, width))
        offset = attrs.get("position_offset", 0)
        if offset != ctx.config.get("position_offset", 0) or offset >= rows:
            raise ValueError(f"position_offset {offset} must equal config position_offset "
                             f"{show(ctx.config.get('position_offset', 0))} and leave rows of the {rows}-row table")
    if "token_type" in params:  # absent: the model has no token types (DistilBERT); type ids are ignored
        ctx.expect(params["token_type"] + names.WEIGHT, (ctx.cfg("type_vocab_size"), width))
    ctx.norm(params["norm"], width)
    return [width]


def _linear(node: dict, ctx: GraphContext) -> list:
    (width,) = node["_widths"]
    prefix = node["params"]["linear"]
    n, _ = ctx.weight(prefix, None, width, bias=True)
    if prefix + names.INPUT_SCALE in ctx.tensors:  # SmoothQuant: x * input_scale before quantizing
        ctx.expect(prefix + names.INPUT_SCALE, (width,))
    k = node["attrs"].get("outliers")
    if k is not None:  # these input channels skip the int8 quantization and run in float32
        if ctx.dtype(prefix + names.WEIGHT) not in ("I8", None) or k > min(width, MAX_OUTLIERS):
            raise ValueError(f"outliers {k} need an int8 weight and at most {min(width, MAX_OUTLIERS)} channels")
        ctx.expect(prefix + names.OUTLIERS, (k,), ("I32",))
        ctx.expect(prefix + names.OUTLIER_WEIGHT, (n, k))
    elif prefix + names.OUTLIERS in ctx.tensors or prefix + names.OUTLIER_WEIGHT in ctx.tensors:
        raise ValueError(f"tensors {show(prefix + names.OUTLIERS)} or {show(prefix + names.OUTLIER_WEIGHT)} "
                         f"present but the node has no outliers attr")
    return [n]


def _attention(node: dict, ctx: GraphContext) -> list:
    hidden, heads = ctx.cfg("hidden_size"), node["attrs"]["num_heads"]
    if heads != ctx.cfg("num_heads") or hidden % heads:
        raise ValueError(f"num_heads {heads} must equal config num_heads and divide hidden_size {hidden}")
    if node["_widths"] != [3 * hidden, NO_WIDTH]:
        raise ValueError(f"inputs have widths {node['_widths']}, expected [{3 * hidden}, seq_offsets]")
    return [hidden]


def _add_norm(node: dict, ctx: GraphContext) -> list:
    hidden = ctx.cfg("hidden_size")
    if node["_widths"] != [hidden, hidden]:
        raise ValueError(f"inputs have widths {node['_widths']}, expected [{hidden}, {hidden}]")
    ctx.norm(node["params"]["norm"])
    return [hidden]


def _first_token(node: dict, ctx: GraphContext) -> list:
    return [node["_widths"][0]]


def _relative_attention(node: dict, ctx: GraphContext) -> list:
    """attention's ports and widths, plus a (rows >= num_buckets, num_heads) F32 bias table."""
    width = _attention(node, ctx)
    attrs, name = node["attrs"], node["params"]["bias"] + names.WEIGHT
    buckets, exact = attrs["num_buckets"], attrs["num_buckets"] // 4
    if buckets < 4 or attrs["max_distance"] <= exact:
        raise ValueError(f"num_buckets {buckets} must be >= 4 and max_distance {attrs['max_distance']} "
                         f"above the {exact} exact buckets")
    shape = ctx.shape(name)
    if len(shape) != 2 or shape[0] < buckets or shape[1] != attrs["num_heads"]:
        raise ValueError(f"tensor {show(name)} has shape {shape}, expected (>= {buckets}, {attrs['num_heads']})")
    ctx.expect(name, shape)
    return width


def _disentangled_attention(node: dict, ctx: GraphContext) -> list:
    """attention's ports and widths; a (2 span, H) F32 relative embedding table (span: position_buckets,
    or max_relative_positions without buckets), an optional norm of it (with ``eps``), and a projection
    of >= 2H rows (query rows, then key rows) applied to it."""
    width = _attention(node, ctx)
    hidden, params, attrs = ctx.cfg("hidden_size"), node["params"], node["attrs"]
    span = attrs["position_buckets"] or attrs["max_relative_positions"]
    if attrs["position_buckets"] and (attrs["position_buckets"] < 4 or attrs["max_relative_positions"]
                                      <= attrs["position_buckets"] // 2 + 1):
        raise ValueError(f"position_buckets {attrs['position_buckets']} must be 0 or >= 4 with "
                         f"max_relative_positions {attrs['max_relative_positions']} above half of them plus one")
    ctx.expect(params["rel"] + names.WEIGHT, (2 * span, hidden))
    if ("rel_norm" in params) != ("eps" in attrs):
        raise ValueError("the rel_norm param and the eps attr go together")
    if "rel_norm" in params:
        ctx.norm(params["rel_norm"])
    rows, _ = ctx.weight(params["pos_proj"], None, hidden, bias=True)
    if rows < 2 * hidden:
        raise ValueError(f"pos_proj has {rows} rows, expected >= {2 * hidden} (query rows, then key rows)")
    return width


def _norm(node: dict, ctx: GraphContext) -> list:
    (width,) = node["_widths"]
    ctx.norm(node["params"]["norm"], width)  # any width: ELECTRA's generator head normalises embedding_size
    return [width]


def _tied_linear(node: dict, ctx: GraphContext) -> list:
    (width,) = node["_widths"]
    n, _ = ctx.weight(node["params"]["weight"], None, width, bias=False)
    ctx.expect(node["params"]["bias"] + names.BIAS, (n,))
    return [n]


def _rotary(node: dict, ctx: GraphContext) -> list:
    hidden, heads = ctx.cfg("hidden_size"), node["attrs"]["num_heads"]
    if heads != ctx.cfg("num_heads") or hidden % heads or (hidden // heads) % 2:
        raise ValueError(f"num_heads {heads} must equal config num_heads and split hidden_size {hidden} "
                         "into heads of even width")
    if node["_widths"] != [3 * hidden, NO_WIDTH]:
        raise ValueError(f"inputs have widths {node['_widths']}, expected [{3 * hidden}, position_ids]")
    return [3 * hidden]


def _add(node: dict, ctx: GraphContext) -> list:
    a, b = node["_widths"]
    if a != b:
        raise ValueError(f"inputs have widths {node['_widths']}, expected two equal widths")
    return [a]


# Outlier channels of one linear (docs/format.md, "Outlier channels"): a few input channels whose range would
# coarsen every other channel's int8 levels; the cap bounds the float32 work a hostile file can ask for
MAX_OUTLIERS = 64
MAX_NEIGHBOURS = 31  # rows side by side; DeBERTa-v2 uses 3: a cap keeps a hostile file from asking for huge rows


def _neighbours(node: dict, ctx: GraphContext) -> list:
    width, size = node["_widths"][0], node["attrs"]["size"]
    if size % 2 == 0 or size > MAX_NEIGHBOURS:
        raise ValueError(f"size {size} must be odd and at most {MAX_NEIGHBOURS}")
    if width is NO_WIDTH:
        raise ValueError("the first input must be an activation")
    return [size * width]


def _geglu(node: dict, ctx: GraphContext) -> list:
    (width,) = node["_widths"]
    if width % 2:
        raise ValueError(f"input width {width} must be even: the input and its gate side by side")
    return [width // 2]


OPS: dict[str, OpSchema] = {
    # position row = position_ids + position_offset (RoBERTa: padding_idx + 1); position_ids says how the
    # caller numbers position_ids: "column" in its padded batch (BERT) or among "real_tokens" (RoBERTa)
    "embed": OpSchema(1, (IDS, IDS, IDS), ("word", "position", "token_type", "norm"),
                      {"eps": EPS, "position_offset": Attr(non_negative_int, optional=True),
                       "position_ids": choice("column", "real_tokens", optional=True)}, _embed,
                      optional_params=("token_type", "position"), onnx=("Gather", "EmbedLayerNormalization")),
    "linear": OpSchema(1, (ROWS,), ("linear",),
                       {"activation": choice("none", "gelu", "tanh", "relu", "gelu_tanh"),
                        "activations": choice("int8", "int16", "float32", optional=True),
                        "outliers": Attr(positive_int, optional=True)},
                       _linear, onnx=("MatMul", "Gemm", "MatMulInteger")),
    # window (absent: global): query i of a sequence sees only keys j with |i - j| <= window (ModernBERT's
    # local layers: local_attention // 2)
    "attention": OpSchema(1, (ROWS, OFFSETS), (), {"num_heads": Attr(positive_int),
                                                   "window": Attr(non_negative_int, optional=True)}, _attention,
                          onnx=("Attention", "MultiHeadAttention")),
    # rotary positions on q and k of a (T, 3H) qkv (v copied): per head, dims i and i + d/2 rotated by
    # position_ids * theta^(-2i/d) (transformers' rotate_half convention)
    "rotary": OpSchema(1, (ROWS, IDS), (), {"num_heads": Attr(positive_int), "theta": Attr(positive_number)},
                       _rotary),
    "add": OpSchema(1, (ROWS, ROWS), (), {}, _add),  # a residual add without a norm (pre-norm layers)
    "add_norm": OpSchema(1, (ROWS, ROWS), ("norm",), {"eps": EPS}, _add_norm,
                         onnx=("SkipLayerNormalization",)),
    "geglu": OpSchema(1, (ROWS,), (), {}, _geglu),  # gated feed-forward (ModernBERT's MLP)
    # row t of a sequence -> rows t - size//2 .. t + size//2 side by side, zeros outside the sequence: a
    # linear over it is a same-padded Conv1d along the sequence (DeBERTa-v2's conv layer)
    "neighbours": OpSchema(1, (ROWS, OFFSETS), (), {"size": Attr(positive_int)}, _neighbours),
    # Task heads (docs/format.md, "Heads").
    "first_token": OpSchema(1, (ROWS, OFFSETS), (), {}, _first_token, per_sequence=True),
    "mean_pool": OpSchema(1, (ROWS, OFFSETS), (), {}, _first_token, per_sequence=True),  # mean of each sequence's rows
    "norm": OpSchema(1, (ROWS,), ("norm",), {"eps": EPS}, _norm, onnx=("LayerNormalization",)),
    "tied_linear": OpSchema(1, (ROWS,), ("weight", "bias"), {}, _tied_linear),
    # attention plus bias[bucket(j - i), head] on the scores (MPNet): every layer's node reads the same table
    "relative_attention": OpSchema(1, (ROWS, OFFSETS), ("bias",), {"num_heads": Attr(positive_int),
                                                                  "num_buckets": Attr(positive_int),
                                                                  "max_distance": Attr(positive_int)},
                                   _relative_attention),
    # DeBERTa-v2/v3: attention plus content-to-position and position-to-content terms over log-bucketed
    # distances, the positions' queries and keys projected from the rel table by rows of pos_proj
    "disentangled_attention": OpSchema(
        1, (ROWS, OFFSETS), ("rel", "rel_norm", "pos_proj"),
        {"num_heads": Attr(positive_int), "position_buckets": Attr(non_negative_int),
         "max_relative_positions": Attr(positive_int), "eps": Attr(positive_number, optional=True)},
        _disentangled_attention, optional_params=("rel_norm",)),
}


def input_kind(name: str) -> str:
    """The port kind a graph input fills."""
    return OFFSETS if name == OFFSETS_INPUT else IDS


def check_ports(schema: OpSchema, inputs: list[str], kinds: Mapping[str, str]) -> None:
    """Each input is of the kind its port takes (``kinds``: value -> IDS, OFFSETS or ROWS)."""
    for port, name in zip(schema.inputs, inputs):
        kind = kinds[name]
        if port == ROWS and kind != ROWS:
            raise ValueError(f"input {show(name)} is a graph input, not an activation")
        if port == IDS and kind != IDS:
            raise ValueError(f"input {show(name)} must be a per-token graph id input "
                             f"({', '.join(GRAPH_INPUTS[:-1])}), not an activation")
        if port == OFFSETS and kind != OFFSETS:
            raise ValueError(f"input {show(name)} must be {OFFSETS_INPUT}")


def per_sequence_values(nodes: list[dict]) -> set[str]:
    """Values with one row per sequence: outputs of a per-sequence op, and everything computed from them."""
    out: set[str] = set()
    for node in nodes:
        if OPS[node["op"]].per_sequence or out.intersection(node["inputs"]):
            out.update(node["outputs"])
    return out
