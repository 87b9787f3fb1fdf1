"""Declarative model spec: what a loader fills, nothing executable.

A loader sets named weight slots and settings; setting a slot that does not
exist, or with the wrong shape, raises at once (CTranslate2's frozen specs), so
a typo cannot silently drop a weight.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from edgebert import names
from edgebert.errors import UnsupportedModel

SUPPORTED_ACTIVATIONS = ("gelu", "gelu_tanh")  # gelu_tanh: transformers' gelu_new (ALBERT)
# Architecture flags (CTranslate2's spec style): what a family loader sets instead of
# writing its own graph builder. Each lists the values this converter and runtime
# implement, BERT's first; a loader asking for another gets a clear refusal.
FLAGS = {
    # LayerNorm after each residual add (BERT), or before attention and feed-forward with a plain add and
    # a final norm (ModernBERT: layer 0's attention reads the normalised embeddings, no norm of its own)
    "norm_placement": ("post", "pre"),
    # a learned position table, rotary nodes on q and k (rope_theta), or neither: positions enter only through
    # relative attention (DeBERTa-v3, position_biased_input false)
    "position": ("absolute", "rotary", "relative"),
    "feed_forward": ("plain", "gated"),  # up -> GELU -> down, or up (2F) -> geglu -> down (ModernBERT)
    "position_offset": (0, int),  # first row the positions use; RoBERTa's start at padding_idx + 1
    "position_ids": ("column", "real_tokens"),  # numbered by column (BERT) or among real tokens (RoBERTa)
    "bias": (True,),  # linears carry biases (ModernBERT's do not)
    "shared_layers": (False, True),  # ALBERT: one set of layer weights (blk.0.*) read by every layer
    "embedding_size": (None, int),  # ELECTRA, ALBERT: embeddings of another width, projected to hidden_size
    "relative_buckets": (None, int),  # MPNet: buckets of a relative position bias on every layer's scores
    # DeBERTa-v2/v3's disentangled attention (disentangled_attention nodes): its log buckets (0: none) and
    # max_relative_positions, both None without it; position queries and keys from each layer's own q and k
    # projections (share_att_key) or from its attn_pos; the rel table LayerNormed first (rel_norm)
    "position_buckets": (None, int),
    "max_relative_positions": (None, int),
    "share_att_key": (False, True),
    "rel_norm": (False, True),
    # DeBERTa-v2's convolution after layer 0 (0: none): its odd kernel size, and conv_act its activation
    "conv_kernel_size": (0, int),
}
# ``int`` in FLAGS: any integer >= this (position_offset may be 0; an embedding width may not).
FLAG_MINIMUM = {"position_offset": 0, "embedding_size": 1, "relative_buckets": 4, "position_buckets": 0,
                "max_relative_positions": 1, "conv_kernel_size": 0}
CONV_ACTIVATIONS = ("tanh", "gelu", "relu", "gelu_tanh")  # the linear op's, for conv_act
RELATIVE_MAX_DISTANCE = 128  # MPNet's relative_position_bucket: max_distance is fixed there


def _flag_ok(flag: str, value) -> bool:
    for s in FLAGS[flag]:
        if s is int and isinstance(value, int) and not isinstance(value, bool) and value >= FLAG_MINIMUM[flag]:
            return True
        if s is not int and value == s and type(value) is type(s):
            return True
    return False


def _show_supported(flag: str) -> str:
    return ", ".join(f"an integer >= {FLAG_MINIMUM[flag]}" if s is int else repr(s) for s in FLAGS[flag])


@dataclass(frozen=True)
class EncoderConfig:
    """An encoder of the BERT family: sizes, then architecture flags (defaults: BERT)."""

    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int
    layer_norm_eps: float
    hidden_act: str = "gelu"
    norm_placement: str = "post"
    position: str = "absolute"
    feed_forward: str = "plain"
    position_offset: int = 0
    position_ids: str = "column"
    bias: bool = True
    shared_layers: bool = False
    embedding_size: int | None = None
    relative_buckets: int | None = None
    position_buckets: int | None = None
    max_relative_positions: int | None = None
    share_att_key: bool = False
    rel_norm: bool = False
    conv_kernel_size: int = 0
    conv_act: str | None = None  # with conv_kernel_size: one of CONV_ACTIVATIONS
    rope_theta: float | None = None  # rotary: the base of the global layers
    local_rope_theta: float | None = None  # rotary: the base of the local (windowed) layers
    local_window: int | None = None  # a local layer's query sees keys at most this far (local_attention // 2)
    global_every: int = 1  # layer i attends globally iff i % global_every == 0, else within local_window

    def __post_init__(self):
        if self.hidden_act not in SUPPORTED_ACTIVATIONS:
            raise UnsupportedModel(
                f"hidden_act {self.hidden_act!r} is not supported; supported: {', '.join(SUPPORTED_ACTIVATIONS)}")
        for flag in FLAGS:
            if not _flag_ok(flag, getattr(self, flag)):
                raise UnsupportedModel(f"{flag} {getattr(self, flag)!r} is not supported yet; supported: "
                                       f"{_show_supported(flag)}")
        for name in ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size",
                     "max_position_embeddings"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UnsupportedModel(f"config {name} must be a positive integer, got {value!r}")
        tv = self.type_vocab_size  # 0: no token types (DistilBERT)
        if not isinstance(tv, int) or isinstance(tv, bool) or tv < 0:
            raise UnsupportedModel(f"config type_vocab_size must be a non-negative integer, got {tv!r}")
        if self.position_offset >= self.max_position_embeddings:
            raise UnsupportedModel(f"position_offset {self.position_offset} leaves no row of the "
                                   f"{self.max_position_embeddings} position embeddings")
        if self.hidden_size % self.num_heads:
            raise UnsupportedModel(
                f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        self._check_attention_layout()
        self._check_disentangled()
        k = self.conv_kernel_size
        if (k and (k % 2 == 0 or self.conv_act not in CONV_ACTIVATIONS)) or (not k and self.conv_act is not None):
            raise UnsupportedModel(f"conv_kernel_size {k!r} must be 0 (with conv_act null) or odd (with conv_act "
                                   f"one of {', '.join(CONV_ACTIVATIONS)}), got conv_act {self.conv_act!r}")

    def _check_disentangled(self) -> None:
        """position_buckets and max_relative_positions together; share_att_key and rel_norm only with them."""
        on = self.max_relative_positions is not None
        if (self.position_buckets is not None) != on or (not on and (self.share_att_key or self.rel_norm)):
            raise UnsupportedModel("position_buckets, max_relative_positions, share_att_key and rel_norm describe "
                                   "disentangled attention: the first two both set or both null, the others "
                                   "false without it")
        if on and (self.relative_buckets is not None or self.position == "rotary"):
            raise UnsupportedModel("disentangled attention does not combine with relative_buckets or rotary positions")

    @property
    def rel_span(self) -> int:
        """Half the rows of the disentangled attention's relative embedding table."""
        return self.position_buckets or self.max_relative_positions

    def _check_attention_layout(self) -> None:
        """rope_theta iff rotary; local_window, local_rope_theta and global_every > 1 together, with at
        least one local layer (a reader normalises a layout without one to all-global)."""
        if self.position != "rotary" and self.local_rope_theta is not None:
            raise UnsupportedModel("local_rope_theta needs rotary positions")
        if (self.position == "rotary") != _positive(self.rope_theta):
            raise UnsupportedModel(f"rope_theta {self.rope_theta!r} must be a positive number exactly when "
                                   f"position is 'rotary' (position {self.position!r})")
        local = (self.local_window, self.local_rope_theta if self.position == "rotary" else 1.0, self.global_every)
        if not isinstance(self.global_every, int) or isinstance(self.global_every, bool) \
                or not 1 <= self.global_every <= self.num_layers:
            raise UnsupportedModel(f"global_every must be an integer in 1..num_layers, got {self.global_every!r}")
        if self.global_every == 1:
            if self.local_window is not None or self.local_rope_theta is not None:
                raise UnsupportedModel("local_window and local_rope_theta need local layers (global_every > 1)")
        elif not (isinstance(local[0], int) and not isinstance(local[0], bool) and local[0] >= 0
                  and _positive(local[1])):
            raise UnsupportedModel(f"local layers need local_window (an integer >= 0) and, with rotary positions, "
                                   f"local_rope_theta; got {local[0]!r}, {self.local_rope_theta!r}")

    def layer_window(self, i: int) -> int | None:
        """Layer i's attention window: None (global) or local_window."""
        return None if i % self.global_every == 0 else self.local_window

    def layer_theta(self, i: int) -> float | None:
        return self.rope_theta if i % self.global_every == 0 else self.local_rope_theta

    @property
    def max_positions(self) -> int:
        """Tokens a sequence may have: the position table's rows from position_offset on."""
        return self.max_position_embeddings - self.position_offset

    @property
    def embedding_width(self) -> int:
        return self.embedding_size or self.hidden_size

    @property
    def up_size(self) -> int:
        """Rows of the feed-forward up projection: input and gate side by side when gated."""
        return 2 * self.intermediate_size if self.feed_forward == "gated" else self.intermediate_size

    @property
    def stored_layers(self) -> int:
        """Layers with weights of their own in the file: one when all layers share them (ALBERT)."""
        return 1 if self.shared_layers else self.num_layers

    def weights_of(self, layer: int) -> int:
        """The stored layer whose tensors layer ``layer`` reads."""
        return 0 if self.shared_layers else layer

    def as_dict(self) -> dict:
        return asdict(self)


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


@dataclass(frozen=True)
class HeadGraph:
    """How a family's heads differ in the graph (defaults: BERT). Not written to the file: the graph is."""

    pooled_activation: str = "tanh"  # the first-token dense layer: BERT's pooler, RoBERTa's classifier.dense
    pooled_output: str | None = "pooler_output"  # its value, a graph output when the source returns it
    mlm_activation: str | None = "gelu"  # the masked-LM transform's; None: the config's hidden_act (ALBERT)
    pooling: str = "first"  # what sequence classification pools: the "first" token, or the "mean" of all
    # ModernBERT's prediction head: the pooled dense layer is followed by a norm (pooler.norm), and token
    # classification and QA read the same dense + norm per token before their final layer
    head_norm: bool = False


BERT_HEADS = HeadGraph()


@dataclass
class Slot:
    """One tensor a loader must fill: its role (edgebert/names.py) says how quantization treats it."""

    shape: tuple[int, ...]
    role: names.Role
    suffix: str  # names.WEIGHT, names.BIAS
    value: np.ndarray | None = None

    @property
    def quantized(self) -> bool:
        """Quantized in an int8 file: the weight of a linear or embedding role."""
        return self.suffix == names.WEIGHT and self.role.quantized


def slots_of(role: names.Role, shape: tuple[int, ...], layer: int | None = None,
             bias: bool = True) -> dict[str, Slot]:
    """The ``.weight`` (``shape``) and, if asked, ``.bias`` (``shape[:1]``) slots of one layer."""
    prefix = role.prefix(layer)
    out = {prefix + names.WEIGHT: Slot(shape, role, names.WEIGHT)}
    if bias:
        out[prefix + names.BIAS] = Slot(shape[:1], role, names.BIAS)
    return out


def bert_slots(c: EncoderConfig) -> dict[str, Slot]:
    """Standard tensor names (docs/format.md) of an encoder of the BERT family, fp32 source form."""
    H, E, F = c.hidden_size, c.embedding_width, c.intermediate_size
    slots = slots_of(names.TOKEN_EMBD, (c.vocab_size, E), bias=False)
    if c.position == "absolute":
        slots.update(slots_of(names.POSITION_EMBD, (c.max_position_embeddings, E), bias=False))
    if c.type_vocab_size:
        slots.update(slots_of(names.TOKEN_TYPE_EMBD, (c.type_vocab_size, E), bias=False))
    slots.update(slots_of(names.EMBD_NORM, (E,)))
    if c.embedding_size is not None:
        slots.update(slots_of(names.EMBD_PROJ, (H, E)))
    if c.relative_buckets is not None:
        slots.update(slots_of(names.REL_BIAS, (c.relative_buckets, c.num_heads), bias=False))
    if c.max_relative_positions is not None:
        slots.update(slots_of(names.REL_EMBD, (2 * c.rel_span, H), bias=False))
        if c.rel_norm:
            slots.update(slots_of(names.REL_NORM, (H,)))
    for i in range(c.stored_layers):
        for role, shape in ((names.ATTN_QKV, (3 * H, H)), (names.ATTN_OUTPUT, (H, H)), (names.ATTN_NORM, (H,)),
                            (names.FFN_UP, (c.up_size, H)), (names.FFN_DOWN, (H, F)), (names.FFN_NORM, (H,))):
            if not (role is names.ATTN_NORM and i == 0 and c.norm_placement == "pre"):
                slots.update(slots_of(role, shape, i))
        if c.max_relative_positions is not None and not c.share_att_key:
            slots.update(slots_of(names.ATTN_POS, (2 * H, H), i))  # position query rows, then key rows
    if c.norm_placement == "pre":
        slots.update(slots_of(names.FINAL_NORM, (H,)))
    if c.conv_kernel_size:
        slots.update(slots_of(names.CONV, (H, c.conv_kernel_size * H)))
        slots.update(slots_of(names.CONV_NORM, (H,)))
    return slots


@dataclass
class ModelSpec:
    """Everything the pipeline needs to validate, quantize and save a model."""

    source_architecture: str
    config: EncoderConfig
    tokenizer_json: str
    max_length: int
    pad_token_id: int
    pooling: dict = field(default_factory=lambda: {"mode": "mean", "normalize": False})
    slots: dict[str, Slot] = field(default_factory=dict)
    # Task head (docs/format.md, ``edgebert.head``): {"task", "id2label", ...}; None for a bare encoder.
    head: dict | None = None
    head_graph: HeadGraph = BERT_HEADS  # how the family's head nodes differ (converters/graph.py)
    architecture: str = "bert"  # the family (edgebert.architecture), informational
    # int8 sources (ONNX): weight name -> (q, scale) kept exactly, (q, scale, input_scale) with a SmoothQuant
    # input scale (our own export), or (None, None) when the source's int8 values were not symmetric per
    # output channel and are dequantized and requantized
    prequantized: dict = field(default_factory=dict)
    prequantized_from: str = ""  # the int8 source's form(s), e.g. "QDQ, DynamicQuantizeLinear + MatMulInteger"
    # linear prefix -> "int16" / "float32": the source's own higher-precision layers (our ONNX export), used
    # instead of calibration's choice
    higher_precision: dict = field(default_factory=dict)
    # linear prefix -> outlier channel indices (k,) int32: the source's own (our ONNX export), kept as they are
    outliers: dict = field(default_factory=dict)

    def __post_init__(self):
        if not self.slots:
            self.slots = bert_slots(self.config)

    def add_slots(self, slots: dict[str, Slot]) -> None:
        """Head loaders declare their extra weights before filling them."""
        clash = set(slots) & set(self.slots)
        if clash:
            raise KeyError(f"spec already has weight slots {sorted(clash)}")
        self.slots.update(slots)

    def __setitem__(self, name: str, value: np.ndarray) -> None:
        slot = self.slots.get(name)
        if slot is None:
            raise KeyError(f"spec has no weight slot {name!r}")
        value = np.asarray(value)
        if tuple(value.shape) != slot.shape:
            raise UnsupportedModel(f"weight {name}: shape {tuple(value.shape)} does not match "
                                   f"the config's {slot.shape}")
        slot.value = np.ascontiguousarray(value, dtype=np.float32)

    def missing(self) -> list[str]:
        return [name for name, slot in self.slots.items() if slot.value is None]
