"""Names declared once (like gguf-py's constants): metadata keys, tensor suffixes, tensor roles.

A tensor's name is a layer prefix (a role's template, ``blk.{i}.ffn_up``) and a
suffix (``.weight``, ``.scale``...). What the converter and calibration do with
a tensor follows from its role's traits (quantized? fed by a LayerNorm?), never
from the spelling of its name. docs/format.md lists the same names; a test
checks the two against each other.
"""
from __future__ import annotations

from dataclasses import dataclass

# ---- metadata keys (docs/format.md, "Metadata keys") ----------------------------
FORMAT = "edgebert.format"
VERSION = "edgebert.version"
CHECKSUM = "edgebert.payload_sha256"
ARCHITECTURE = "edgebert.architecture"
SOURCE_ARCHITECTURE = "edgebert.source_architecture"
CONFIG = "edgebert.config"
QUANTIZATION = "edgebert.quantization"
GRAPH = "edgebert.graph"
TOKENIZER = "edgebert.tokenizer"
TOKENIZER_CONFIG = "edgebert.tokenizer_config"
POOLING = "edgebert.pooling"
HEAD = "edgebert.head"
REPORT = "edgebert.report"
CALIBRATION = "edgebert.calibration"
SOURCE_QUANTIZATION = "edgebert.source_quantization"  # an int8 source's weights: kept or requantized
METADATA_KEYS = (FORMAT, VERSION, ARCHITECTURE, SOURCE_ARCHITECTURE, CONFIG, QUANTIZATION, GRAPH, TOKENIZER,
                 TOKENIZER_CONFIG, POOLING, HEAD, REPORT, CALIBRATION, SOURCE_QUANTIZATION, CHECKSUM)

# ---- tensor suffixes: a role's prefix + one of these ----------------------------
WEIGHT, BIAS, SCALE, INPUT_SCALE = ".weight", ".bias", ".scale", ".input_scale"
# A linear's outlier channels: their indices (k,) I32 and its weight columns there (N, k) F32
OUTLIERS, OUTLIER_WEIGHT = ".outliers", ".outlier_weight"

# How quantization treats a role's weight: "linear" int8 per output channel,
# "embedding" int8 per row, "norm" and "float" stay float32.
QUANTIZED_KINDS = ("linear", "embedding")


@dataclass(frozen=True)
class Role:
    """A kind of tensor in the file: its name template and traits."""

    template: str  # the layer prefix; "{i}" stands for the layer index
    kind: str  # "linear" | "embedding" | "norm" | "float"
    smoothed: bool = False  # its input comes from a LayerNorm: SmoothQuant moves outlier channels into it
    calibrated: bool = False  # an encoder linear: calibration records its inputs and ranks its sensitivity

    def prefix(self, layer: int | None = None) -> str:
        return self.template.format(i=layer) if "{i}" in self.template else self.template

    @property
    def quantized(self) -> bool:
        return self.kind in QUANTIZED_KINDS


# ---- the encoder -----------------------------------------------------------------
TOKEN_EMBD = Role("token_embd", "embedding")
POSITION_EMBD = Role("position_embd", "float")
TOKEN_TYPE_EMBD = Role("token_type_embd", "float")
EMBD_NORM = Role("embd_norm", "norm")
# ELECTRA, ALBERT: embeddings of embedding_size, projected to hidden_size after their LayerNorm
EMBD_PROJ = Role("embd_proj", "linear", smoothed=True, calibrated=True)
# MPNet: the relative position bias table (buckets, heads), one for every layer
REL_BIAS = Role("rel_bias", "float")
# DeBERTa-v2/v3: the relative position embeddings (2 span, H) every layer reads, their LayerNorm, and a
# layer's own projections of them (query rows, then key rows) when it does not share attn_qkv's; the
# projections run once, when a reader binds the graph, so they stay float32
REL_EMBD = Role("rel_embd", "float")
REL_NORM = Role("rel_embd_norm", "norm")
ATTN_POS = Role("blk.{i}.attn_pos", "float")
ATTN_QKV = Role("blk.{i}.attn_qkv", "linear", smoothed=True, calibrated=True)
ATTN_OUTPUT = Role("blk.{i}.attn_output", "linear", calibrated=True)
ATTN_NORM = Role("blk.{i}.attn_norm", "norm")
FFN_UP = Role("blk.{i}.ffn_up", "linear", smoothed=True, calibrated=True)
FFN_DOWN = Role("blk.{i}.ffn_down", "linear", calibrated=True)
FFN_NORM = Role("blk.{i}.ffn_norm", "norm")
FINAL_NORM = Role("output_norm", "norm")  # pre-norm encoders (ModernBERT): after the last layer
# DeBERTa-v2's convolution after layer 0 (conv_kernel_size k): a Conv1d over each sequence's embeddings
# stored as a linear over k neighbouring rows side by side, (H, k H); its LayerNorm after the residual add
CONV = Role("conv", "linear", calibrated=True)
CONV_NORM = Role("conv_norm", "norm")

# ---- task heads (docs/format.md, "Heads") ----------------------------------------
# Small final layers (a few output rows) stay float32: int8 saves almost no
# bytes there, and on the tiny test heads (max abs logit error, int8 encoder)
# int8 final layers doubled the error for token classification (0.147 vs
# 0.070) and QA (0.110 vs 0.041); pooled heads were equal (0.012 vs 0.014).
POOLER = Role("pooler", "linear")
CLASSIFIER = Role("cls", "float")
QA = Role("qa", "float")
NSP = Role("nsp", "float")
POOLER_NORM = Role("pooler.norm", "norm")  # ModernBERT's prediction head: dense, activation, norm
MLM_TRANSFORM = Role("mlm.transform", "linear")
MLM_NORM = Role("mlm.norm", "norm")
MLM_DECODER = Role("mlm.decoder", "linear")
# ELECTRA's discriminator (replaced-token detection): per token, transform then one logit
RTD_TRANSFORM = Role("rtd.transform", "linear")
RTD = Role("rtd", "float")

ROLES = (TOKEN_EMBD, POSITION_EMBD, TOKEN_TYPE_EMBD, EMBD_NORM, EMBD_PROJ, REL_BIAS, ATTN_QKV, ATTN_OUTPUT, ATTN_NORM, FFN_UP,
         FFN_DOWN, FFN_NORM, POOLER, CLASSIFIER, QA, NSP, MLM_TRANSFORM, MLM_NORM, MLM_DECODER, RTD_TRANSFORM, RTD,
         FINAL_NORM, POOLER_NORM, REL_EMBD, REL_NORM, ATTN_POS, CONV, CONV_NORM)


def role_of(prefix: str) -> Role | None:
    """The role whose template names ``prefix`` (``blk.3.ffn_up`` -> FFN_UP), or None for another name."""
    for role in ROLES:
        head, sep, tail = role.template.partition("{i}")
        if not sep:
            if prefix == role.template:
                return role
        elif (prefix.startswith(head) and prefix.endswith(tail) and len(prefix) > len(head) + len(tail)
              and prefix[len(head):len(prefix) - len(tail)].isdigit()):
            return role
    return None


def layer_of(prefix: str) -> int | None:
    """The layer index in a per-layer role's name (``blk.3.ffn_up`` -> 3), else None."""
    role = role_of(prefix)
    if role is None or "{i}" not in role.template:
        return None
    head, _, tail = role.template.partition("{i}")
    return int(prefix[len(head):len(prefix) - len(tail)])
