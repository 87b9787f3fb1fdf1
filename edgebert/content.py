"""What a file's graph and tensors say, read without its descriptive metadata (docs/format.md,
"One source of truth").

Each fact of ``edgebert.config`` and ``edgebert.quantization`` has one rule here
that reads it from the graph's nodes and the tensors' shapes and dtypes. A rule
raises ``Unknown`` when the graph is too malformed to say (graph validation
then names the fault) and ``ContentError`` when the content contradicts itself
(two layers of different widths). No numpy: tensors are anything with
``.shape`` and ``.dtype`` (arrays, or the header's TensorInfo).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from edgebert import names

INT8_WEIGHTS, INT8_EMBEDDINGS, FLOAT32 = "int8_symmetric_per_channel", "int8_symmetric_per_row", "float32"
# What this runtime does with the activations entering an int8 linear (docs/format.md, "Quantization scheme").
INT8_ACTIVATIONS = "uint8_asymmetric_per_token_dynamic"
_DTYPE_NAMES = {"float32": "F32", "int32": "I32", "int8": "I8"}
ATTENTION_OPS = ("attention", "relative_attention", "disentangled_attention")


class Unknown(Exception):
    """The graph is too malformed for this rule to read its fact."""


class Stated(Unknown):
    """The content does not fix this fact; the stored value stands (max_position_embeddings of a model
    without a position table: rotary positions have no table, only the source's stated limit)."""


class ContentError(Exception):
    """The content contradicts itself: no description could match it."""


def dtype_name(tensor: Any) -> str:
    """Header dtype name (F32, I32, I8) of an array or a TensorInfo."""
    dtype = tensor.dtype
    return dtype if isinstance(dtype, str) else _DTYPE_NAMES.get(dtype.name, str(dtype))


class Content:
    """The graph's nodes and the tensors, with the look-ups the rules share."""

    def __init__(self, graph: Any, tensors: Mapping[str, Any]):
        nodes = graph.get("nodes") if isinstance(graph, dict) else None
        self.nodes = [n for n in nodes if isinstance(n, dict)] if isinstance(nodes, list) else []
        self.tensors = tensors
        self.producer = {}
        for node in self.nodes:
            for out in node.get("outputs") or ():
                if isinstance(out, str):
                    self.producer[out] = node

    def ops(self, op: str) -> list[dict]:
        return [n for n in self.nodes if n.get("op") == op]

    def attentions(self) -> list[dict]:
        """Every layer's attention node, with or without a relative position bias."""
        return [n for n in self.nodes if n.get("op") in ATTENTION_OPS]

    def embed(self) -> dict:
        found = self.ops("embed")
        if len(found) != 1:
            raise Unknown(f"the graph has {len(found)} embed nodes, an encoder has one")
        return found[0]

    def param(self, node: dict, key: str) -> str:
        params = node.get("params")
        if not isinstance(params, dict) or not isinstance(params.get(key), str):
            raise Unknown(f"a {node.get('op')} node has no {key!r} param")
        return params[key]

    def attr(self, node: dict, key: str, default: Any = None) -> Any:
        attrs = node.get("attrs")
        return attrs.get(key, default) if isinstance(attrs, dict) else default

    def shape(self, name: str) -> tuple[int, ...]:
        if name not in self.tensors:
            raise Unknown(f"tensor {name!r} is absent")
        return tuple(self.tensors[name].shape)

    def dtype(self, name: str) -> str:
        if name not in self.tensors:
            raise Unknown(f"tensor {name!r} is absent")
        return dtype_name(self.tensors[name])

    def linears(self, *roles: names.Role) -> list[tuple[dict, str]]:
        """(node, prefix) of the linear nodes whose weight has one of ``roles`` (all linears if none given)."""
        out = []
        for node in self.ops("linear"):
            prefix = self.param(node, "linear")
            if not roles or names.role_of(prefix) in roles:
                out.append((node, prefix))
        return out

    def consumers(self, value: str) -> list[dict]:
        return [n for n in self.nodes if value in (n.get("inputs") or ())]


def one(values: list, what: str) -> Any:
    """The single value every layer agrees on."""
    distinct = []
    for v in values:
        if not any(v == d and type(v) is type(d) for d in distinct):
            distinct.append(v)
    if not distinct:
        raise Unknown(f"the graph has no {what}")
    if len(distinct) > 1:
        raise ContentError(f"the graph's {what} disagree: {distinct[:4]}")
    return distinct[0]


# ------------------------------------------------------------------ config rules


def _vocab_size(c: Content) -> int:
    return c.shape(c.param(c.embed(), "word") + names.WEIGHT)[0]


def _hidden_size(c: Content) -> int:
    """Each attention node's qkv input comes from a linear of 3H rows."""
    widths = []
    for node in c.attentions():
        inputs = node.get("inputs") or [None]
        producer = c.producer.get(inputs[0]) if isinstance(inputs[0], str) else None
        if producer is not None and producer.get("op") == "rotary":  # rotary positions on q and k between
            source = (producer.get("inputs") or [None])[0]
            producer = c.producer.get(source) if isinstance(source, str) else None
        if producer is None or producer.get("op") != "linear":
            raise Unknown("an attention node's qkv input is not a linear's output")
        rows = c.shape(c.param(producer, "linear") + names.WEIGHT)[0]
        if rows % 3:
            raise ContentError(f"attention reads a qkv projection of {rows} rows, not a multiple of 3")
        widths.append(rows // 3)
    return one(widths, "attention layers' hidden sizes")


def _embedding_size(c: Content) -> int | None:
    """The word table's width when an embd_proj linear projects it (ALBERT projects even equal widths)."""
    width = c.shape(c.param(c.embed(), "word") + names.WEIGHT)[1]
    return width if width != _hidden_size(c) or c.linears(names.EMBD_PROJ) else None


def _max_positions(c: Content) -> int:
    params = c.embed().get("params")
    if isinstance(params, dict) and "position" not in params:
        raise Stated("the embed node has no position table (rotary positions)")
    return c.shape(c.param(c.embed(), "position") + names.WEIGHT)[0]


def _type_vocab_size(c: Content) -> int:
    params = c.embed().get("params")
    if isinstance(params, dict) and "token_type" not in params:
        return 0  # no token types (DistilBERT)
    return c.shape(c.param(c.embed(), "token_type") + names.WEIGHT)[0]


def _num_heads(c: Content) -> int:
    return one([c.attr(n, "num_heads") for n in c.attentions()], "attention nodes' num_heads")


def _num_layers(c: Content) -> int:
    layers = len(c.attentions())
    if not layers:
        raise Unknown("the graph has no attention node")
    return layers


def _intermediate_size(c: Content) -> int:
    return one([c.shape(p + names.WEIGHT)[1] for _, p in c.linears(names.FFN_DOWN)],
               "feed-forward down projections' input widths")


def _layer_norm_eps(c: Content) -> float:
    return one([c.attr(n, "eps") for n in c.nodes if c.attr(n, "eps") is not None], "LayerNorm eps attrs")


def _gated(c: Content) -> list[bool]:
    """Per feed-forward up projection: is its output gated by a geglu node?"""
    return [any(n.get("op") == "geglu" for n in c.consumers((node.get("outputs") or [None])[0]))
            for node, _ in c.linears(names.FFN_UP)]


def _feed_forward(c: Content) -> str:
    return one(["gated" if g else "plain" for g in _gated(c)], "feed-forward forms")


def _hidden_act(c: Content) -> str:
    acts = ["gelu" if gated else c.attr(node, "activation")
            for gated, (node, _) in zip(_gated(c), c.linears(names.FFN_UP))]
    return one(acts, "feed-forward activations")


def _shared_layers(c: Content) -> bool:
    prefixes = [p for _, p in c.linears() if names.layer_of(p) is not None]
    return len(prefixes) != len(set(prefixes))


def _relative_buckets(c: Content) -> int | None:
    """Buckets of the relative position bias: every layer's, or none (plain attention)."""
    return one([c.attr(n, "num_buckets") if n.get("op") == "relative_attention" else None
                for n in c.attentions()], "attention nodes' relative buckets")


def _disentangled_attr(key: str) -> Callable[[Content], Any]:
    """An attr every layer's disentangled_attention node agrees on; None with other attention nodes."""
    return lambda c: one([c.attr(n, key) if n.get("op") == "disentangled_attention" else None
                          for n in c.attentions()], f"attention nodes' {key}")


def _share_att_key(c: Content) -> bool:
    """Position queries and keys from each layer's own attn_qkv (not an attn_pos of its own)."""
    return one([n.get("op") == "disentangled_attention" and names.role_of(c.param(n, "pos_proj")) is names.ATTN_QKV
                for n in c.attentions()], "attention nodes' position projections")


def _rel_norm(c: Content) -> bool:
    return one([isinstance(n.get("params"), dict) and "rel_norm" in n["params"] for n in c.attentions()],
               "attention nodes' rel_norm params")


def _conv(c: Content) -> tuple[int, str | None]:
    """(size, activation) of the convolution: a neighbours node and the linear reading it; (0, None) without."""
    nodes = c.ops("neighbours")
    if not nodes:
        return 0, None
    if len(nodes) > 1:
        raise ContentError(f"{len(nodes)} neighbours nodes; a convolution layer is one")
    out = (nodes[0].get("outputs") or [None])[0]
    readers = [n for n in c.ops("linear") if (n.get("inputs") or [None])[0] == out]
    if len(readers) != 1:
        raise ContentError("a neighbours node's output must be read by one linear node (the convolution)")
    return c.attr(nodes[0], "size"), c.attr(readers[0], "activation")


def _layout(c: Content) -> list[tuple[Any, Any]]:
    """(window attr or None, rotary theta or None) of each plain attention node, in layer order."""
    out = []
    for node in c.ops("attention"):
        source = (node.get("inputs") or [None])[0]
        producer = c.producer.get(source) if isinstance(source, str) else None
        theta = c.attr(producer, "theta") if producer is not None and producer.get("op") == "rotary" else None
        out.append((c.attr(node, "window"), theta))
    return out


def _global_every(c: Content) -> int:
    """The smallest n for which layer i attends globally (no window) iff i % n == 0; 1: all global."""
    is_global = [window is None for window, _ in _layout(c)]
    for n in range(1, len(is_global) + 1):
        if all(g == (i % n == 0) for i, g in enumerate(is_global)):
            return n
    if not is_global:
        return 1
    raise ContentError(f"the attention windows (global: {is_global}) are not global every n-th layer from layer 0")


def _of_layers(which: str, index: int) -> Callable[[Content], Any]:
    """The value (window or theta: ``index``) all global (or local) layers share; None without such layers
    or with a value on none of them (no rotary node)."""
    def rule(c: Content) -> Any:
        values = [pair[index] for pair in _layout(c) if (pair[0] is None) == (which == "global")]
        return one(values, f"{which} attention layers' {('windows', 'rotary thetas')[index]}") if values else None
    return rule


def _norm_placement(c: Content) -> str:
    """pre-norm layers add their residuals with plain add nodes; post-norm ones with add_norm."""
    return "pre" if c.ops("add") else "post"


def _position(c: Content) -> str:
    """rotary nodes; else a position table in the embed node (absolute), or none (relative attention only)."""
    if c.ops("rotary"):
        return "rotary"
    params = c.embed().get("params")
    return "relative" if isinstance(params, dict) and "position" not in params else "absolute"


def _embed_attr(key: str, default: Any) -> Callable[[Content], Any]:
    return lambda c: c.attr(c.embed(), key, default)


def _op_set(value: Any, why: str) -> Callable[[Content], Any]:
    """A flag that the op set of format version 1 fixes, whatever the graph."""
    rule = lambda c: value  # noqa: E731
    rule.__doc__ = why
    return rule


# field -> rule; the order is edgebert.config's. First the fields every version writes.
REQUIRED = ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size", "max_position_embeddings",
            "type_vocab_size", "layer_norm_eps", "hidden_act")
CONFIG_RULES: dict[str, Callable[[Content], Any]] = {
    "vocab_size": _vocab_size,
    "hidden_size": _hidden_size,
    "num_layers": _num_layers,
    "num_heads": _num_heads,
    "intermediate_size": _intermediate_size,
    "max_position_embeddings": _max_positions,
    "type_vocab_size": _type_vocab_size,
    "layer_norm_eps": _layer_norm_eps,
    "hidden_act": _hidden_act,
    # architecture flags: absent in files written before 7752a1e, then derived
    "norm_placement": _norm_placement,
    "position": _position,
    "feed_forward": _feed_forward,
    "position_offset": _embed_attr("position_offset", 0),
    "position_ids": _embed_attr("position_ids", "column"),
    "bias": _op_set(True, "the linear op always adds a .bias"),
    "shared_layers": _shared_layers,
    "embedding_size": _embedding_size,
    "relative_buckets": _relative_buckets,
    "position_buckets": _disentangled_attr("position_buckets"),
    "max_relative_positions": _disentangled_attr("max_relative_positions"),
    "share_att_key": _share_att_key,
    "rel_norm": _rel_norm,
    "conv_kernel_size": lambda c: _conv(c)[0],
    "conv_act": lambda c: _conv(c)[1],
    "rope_theta": _of_layers("global", 1),
    "local_rope_theta": _of_layers("local", 1),
    "local_window": _of_layers("local", 0),
    "global_every": _global_every,
}


def config_facts(content: Content) -> dict[str, Any]:
    """Field -> the content's value, or the ``Unknown`` that says why it cannot be read.
    A ``ContentError`` propagates: the content contradicts itself."""
    facts: dict[str, Any] = {}
    for field, rule in CONFIG_RULES.items():
        try:
            facts[field] = rule(content)
        except Unknown as why:
            facts[field] = why
        except (TypeError, ValueError, IndexError, AttributeError, KeyError) as exc:
            facts[field] = Unknown(f"the graph is malformed ({type(exc).__name__})")
    return facts


# ------------------------------------------------------------ quantization rules


def weights_scheme(c: Content) -> str:
    """int8 or float32 from the dtypes of the quantizable linears' weights (roles of kind linear, or
    names no role knows); heads' small final layers (roles of kind float) stay float32 in every file."""
    kinds = [c.dtype(p + names.WEIGHT) for _, p in c.linears()
             if names.role_of(p) is None or names.role_of(p).kind == "linear"]
    kind = one(kinds, "linear weights' dtypes")
    return {"I8": INT8_WEIGHTS, "F32": FLOAT32}.get(kind, kind)


def embeddings_scheme(c: Content) -> str:
    kind = c.dtype(c.param(c.embed(), "word") + names.WEIGHT)
    return {"I8": INT8_EMBEDDINGS, "F32": FLOAT32}.get(kind, kind)


def precision_attrs(c: Content) -> dict[str, str]:
    """Linear prefix -> its node's ``activations`` attr, for nodes that set one."""
    return {p: c.attr(n, "activations") for n, p in c.linears() if c.attr(n, "activations") is not None}
