"""A file's description checked against its content: what ``load`` runs with and ``edgebert info`` shows.

docs/format.md, "One source of truth", gives the rule per field: a field the
graph and tensors determine is compared with them and a mismatch refused (its
message names the field, its value and what the content says); a field absent
from an older file is derived from the content and listed in ``derived``;
fields the content cannot determine (pooling, truncation) have closed
vocabularies and strict types. Unknown keys inside these objects are refused;
unknown top-level metadata keys (the spec's room for additive keys) are listed.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping

from edgebert import content as C
from edgebert import names, ops
from edgebert.errors import InvalidModelFile
from edgebert.format import validate_graph
from edgebert.text import top_level_value
from edgebert.ops import show

POOLING_MODES = ("mean", "cls", "max")
SCALE_CONVENTION = "w ~= q * scale[:, None]; scale = amax / 127"
# Converters before 644bb49 named the activation scheme of their runtime, which quantized
# symmetrically; the weights are the same, and this runtime runs its own scheme on them.
LEGACY_ACTIVATIONS = ("int8_symmetric_per_token_dynamic",)
SCHEMES = {"weights": (C.INT8_WEIGHTS, C.FLOAT32), "embeddings": (C.INT8_EMBEDDINGS, C.FLOAT32),
           "activations": (C.INT8_ACTIVATIONS, *LEGACY_ACTIVATIONS, C.FLOAT32)}
PROBLEM_TYPES = ("single_label_classification", "multi_label_classification", "regression", None)
# LayerNorm eps is a guard against dividing by zero: encoders use 1e-12 to 1e-5; from about the
# activations' variance on it changes the normalised values, so larger is refused as a damaged file.
LAYER_NORM_EPS_MAX = 1e-3
MAX_SIZE = 2**31 - 1  # as a tensor dimension (edgebert.format.MAX_DIM)
MAX_LABEL = 100  # provenance strings: characters shown by `edgebert info`
REQUIRED_KEYS = (names.ARCHITECTURE, names.CONFIG, names.QUANTIZATION, names.GRAPH, names.TOKENIZER,
                 names.TOKENIZER_CONFIG, names.POOLING)
FLAG_SINCE = "absent from the file (written before the field existed): read from the graph"

# head task -> its outputs {name: (per sequence?, width: "labels" | "vocab" | int)} and its keys besides task
HEAD_TASKS: dict[str, tuple[dict, tuple[str, ...]]] = {
    "sequence-classification": ({"logits": (True, "labels")}, ("id2label", "problem_type")),
    "token-classification": ({"logits": (False, "labels")}, ("id2label", "problem_type")),
    "question-answering": ({"qa_logits": (False, 2)}, ()),
    "masked-lm": ({"logits": (False, "vocab")}, ("tied_decoder",)),
    "next-sentence": ({"logits": (True, "labels")}, ("id2label",)),
    "pretraining": ({"prediction_logits": (False, "vocab"), "seq_relationship_logits": (True, "labels")},
                    ("id2label", "tied_decoder")),
    "replaced-token-detection": ({"rtd_logits": (False, 1)}, ()),
}
OPTIONAL_OUTPUTS = {"pooler_output": (True, "hidden")}  # BERT's heads expose it; RoBERTa's do not


@dataclasses.dataclass(frozen=True)
class Description:
    """Verified metadata. ``derived``: "object.field" -> how it was derived (absent or legacy in the file)."""

    config: dict
    quantization: dict
    pooling: dict
    tokenizer_config: dict
    head: dict | None
    provenance: dict
    report: dict
    calibration: dict | None
    graph: dict
    widths: dict
    derived: dict
    unknown_keys: tuple
    source_quantization: dict | None = None  # an int8 source's weights (ONNX): kept, requantized, dequantized


class _Refuse:
    def __init__(self, path: str):
        self.path = path

    def __call__(self, message: str):
        raise InvalidModelFile(f"{self.path}: {message}")

    def mismatch(self, key: str, field: str, value: Any, says: Any, where: str):
        self(f"{key} {field} is {show(value)}, but the content says {show(says)} (from {where})")


def describe(model_file) -> Description:
    """Check every descriptive metadata value of a ModelFile against its graph and tensors."""
    refuse, meta = _Refuse(model_file.path), model_file.metadata
    for key in REQUIRED_KEYS:
        if key not in meta:
            refuse(f"metadata {key} is missing")
    provenance = {key: _label(meta[key], key, refuse) for key in (names.ARCHITECTURE, names.SOURCE_ARCHITECTURE)
                  if key in meta}
    graph, tensors = model_file.json(names.GRAPH), model_file.tensors
    content = C.Content(graph, tensors)
    config, derived = _check_config(model_file.json(names.CONFIG), content, refuse, final=False)
    try:
        widths = validate_graph(graph, tensors, config)
    except InvalidModelFile as exc:
        refuse(str(exc))
    config, derived = _check_config(model_file.json(names.CONFIG), content, refuse, final=True)
    quant = _check_quantization(model_file.json(names.QUANTIZATION), content, refuse, derived)
    _check_int8_values(tensors, refuse)
    return Description(
        config=config, quantization=quant, pooling=_check_pooling(model_file.json(names.POOLING), refuse),
        tokenizer_config=_check_tokenizer_config(model_file.json(names.TOKENIZER_CONFIG), meta[names.TOKENIZER],
                                                 config, refuse),
        head=_check_head(model_file.json(names.HEAD) if names.HEAD in meta else None, graph, widths, config, refuse),
        provenance=provenance,
        report=_check_report(model_file.json(names.REPORT) if names.REPORT in meta else {}, tensors, refuse),
        calibration=(_check_calibration(model_file.json(names.CALIBRATION), content, quant, refuse)
                     if names.CALIBRATION in meta else None),
        graph=graph, widths=widths, derived=derived,
        unknown_keys=tuple(sorted(k for k in meta if k not in names.METADATA_KEYS)),
        source_quantization=(_check_source_quantization(model_file.json(names.SOURCE_QUANTIZATION), tensors, refuse)
                             if names.SOURCE_QUANTIZATION in meta else None))


def _label(value: str, key: str, refuse: _Refuse) -> str:
    """Provenance (what the converter read), not a claim about the content: a short printable string."""
    if not value or len(value) > MAX_LABEL or not value.isprintable():
        refuse(f"{key} {show(value)} must be 1 to {MAX_LABEL} printable characters")
    return value


# ------------------------------------------------------------------------ config


def _is_size(value: Any, low: int = 1) -> bool:
    return ops.is_int(value) and low <= value <= MAX_SIZE


def _same(value: Any, fact: Any) -> bool:
    if isinstance(fact, float) or isinstance(value, float):
        return ops.positive_number(value) and ops.positive_number(fact) and value == fact
    return type(value) is type(fact) and value == fact


def _activations() -> tuple[str, ...]:
    return tuple(a for a in ops.OPS["linear"].attrs["activation"].choices if a != "none")


CONFIG_TYPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    **{k: (_is_size, f"an integer in 1..{MAX_SIZE}") for k in
       ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size", "max_position_embeddings")},
    "type_vocab_size": (lambda v: _is_size(v, 0), f"an integer in 0..{MAX_SIZE}"),
    "position_offset": (lambda v: _is_size(v, 0), f"an integer in 0..{MAX_SIZE}"),
    "embedding_size": (lambda v: v is None or _is_size(v), f"null or an integer in 1..{MAX_SIZE}"),
    "layer_norm_eps": (lambda v: ops.positive_number(v) and v <= LAYER_NORM_EPS_MAX,
                       f"a number in (0, {LAYER_NORM_EPS_MAX}]"),
    "hidden_act": (lambda v: v in _activations(), "one of the linear op's activations"),
    "norm_placement": (lambda v: v in ("post", "pre"), "'post' or 'pre'"),
    "position": (lambda v: v in ("absolute", "rotary", "relative"), "'absolute', 'rotary' or 'relative'"),
    "rope_theta": (lambda v: v is None or ops.positive_number(v), "null or a positive number"),
    "local_rope_theta": (lambda v: v is None or ops.positive_number(v), "null or a positive number"),
    "local_window": (lambda v: v is None or _is_size(v, 0), f"null or an integer in 0..{MAX_SIZE}"),
    "global_every": (_is_size, f"an integer in 1..{MAX_SIZE}"),
    "feed_forward": (lambda v: v in ("plain", "gated"), "'plain' or 'gated'"),
    "position_ids": (lambda v: v in ("column", "real_tokens"), "'column' or 'real_tokens'"),
    "bias": (lambda v: v is True, "true (the linear op has a bias)"),
    "shared_layers": (lambda v: isinstance(v, bool), "a JSON boolean"),
    "relative_buckets": (lambda v: v is None or _is_size(v, 4), f"null or an integer in 4..{MAX_SIZE}"),
    "position_buckets": (lambda v: v is None or _is_size(v, 0), f"null or an integer in 0..{MAX_SIZE}"),
    "max_relative_positions": (lambda v: v is None or _is_size(v), f"null or an integer in 1..{MAX_SIZE}"),
    "share_att_key": (lambda v: isinstance(v, bool), "a JSON boolean"),
    "rel_norm": (lambda v: isinstance(v, bool), "a JSON boolean"),
    "conv_kernel_size": (lambda v: _is_size(v, 0), f"an integer in 0..{MAX_SIZE}"),
    "conv_act": (lambda v: v is None or v in _activations(), "null or one of the linear op's activations"),
}


def _check_config(raw: Any, content: C.Content, refuse: _Refuse, final: bool) -> tuple[dict, dict]:
    """Types, then each field against the content. Before graph validation (``final`` False) only
    the facts the content already shows are compared; after it, every fact must be readable."""
    key = names.CONFIG
    if not isinstance(raw, dict):
        refuse(f"{key} is not a JSON object")
    unknown = [k for k in raw if k not in C.CONFIG_RULES]
    if unknown:
        refuse(f"{key} has unknown fields {show(unknown)} (this version knows {', '.join(C.CONFIG_RULES)})")
    missing = [k for k in C.REQUIRED if k not in raw]
    if missing:
        refuse(f"{key} lacks {', '.join(missing)}")
    for field, value in raw.items():
        check, expected = CONFIG_TYPES[field]
        if not check(value):
            refuse(f"{key} {field} is {show(value)}; it must be {expected}")
    try:
        facts = C.config_facts(content)
    except C.ContentError as exc:
        refuse(f"{key} cannot describe this content: {exc}")
    config, derived = {}, {}
    for field, fact in facts.items():
        if isinstance(fact, C.Stated):  # the content leaves it to the stored value
            if field in raw:
                config[field] = raw[field]
            continue
        if isinstance(fact, C.Unknown):
            if final:
                refuse(f"{key} {field} cannot be checked: {fact}")
            if field in raw:
                config[field] = raw[field]
            continue
        if field in raw and not _same(raw[field], fact):
            refuse.mismatch(key, field, raw[field], fact, "the graph and tensor shapes")
        if field not in raw:
            derived[f"config.{field}"] = FLAG_SINCE
        config[field] = fact if field not in raw else raw[field]
    return config, derived


# ------------------------------------------------------------------ quantization


def _check_quantization(raw: Any, content: C.Content, refuse: _Refuse, derived: dict) -> dict:
    key = names.QUANTIZATION
    if not isinstance(raw, dict):
        refuse(f"{key} is not a JSON object")
    try:
        facts = {"weights": C.weights_scheme(content), "embeddings": C.embeddings_scheme(content)}
    except (C.ContentError, C.Unknown) as exc:
        refuse(f"{key} cannot be checked: {exc}")
    int8 = facts["weights"] == C.INT8_WEIGHTS or facts["embeddings"] == C.INT8_EMBEDDINGS
    fields = ("weights", "embeddings", "activations") + (("scale_convention",) if int8 else ())
    if set(raw) != set(fields):
        refuse(f"{key} has fields {show(sorted(raw))}; this content needs exactly {list(fields)}")
    for field in fields[:3]:
        if not isinstance(raw[field], str) or raw[field] not in SCHEMES[field]:
            refuse(f"{key} {field} is {show(raw[field])}, not a scheme this version implements "
                   f"({', '.join(SCHEMES[field])})")
    for field, fact in facts.items():
        if raw[field] != fact:
            refuse.mismatch(key, field, raw[field], fact, "the tensor dtypes")
    runs = C.FLOAT32 if facts["weights"] == C.FLOAT32 else C.INT8_ACTIVATIONS
    if raw["activations"] in LEGACY_ACTIVATIONS and runs == C.INT8_ACTIVATIONS:
        derived["quantization.activations"] = (f"the file says {raw['activations']!r} (converters before "
                                               f"644bb49); this runtime runs {runs}")
    elif raw["activations"] != runs:
        refuse.mismatch(key, "activations", raw["activations"], runs, f"{facts['weights']} weights")
    if int8 and raw["scale_convention"] != SCALE_CONVENTION:
        refuse(f"{key} scale_convention is {show(raw['scale_convention'])}, not {SCALE_CONVENTION!r}")
    return {**raw, "activations": runs}


def _check_int8_values(tensors: Mapping[str, Any], refuse: _Refuse) -> None:
    """Symmetric int8 never uses -128; scales are positive (a zero row gets scale 1). Needs the data."""
    for name, value in tensors.items():
        if not hasattr(value, "min"):
            return  # header only: nothing to read
        if C.dtype_name(value) == "I8" and value.size and int(value.min()) < -127:
            refuse(f"{names.QUANTIZATION} says symmetric int8, but tensor {name} holds -128")
        if name.endswith(names.SCALE) and value.size and not float(value.min()) > 0:
            refuse(f"tensor {name} holds a scale <= 0 (scale = amax / 127, 1 for a zero row)")


# ------------------------------------------------------- pooling, tokenizer, head


def _exact_keys(raw: Any, key: str, fields: tuple, refuse: _Refuse) -> dict:
    if not isinstance(raw, dict) or set(raw) != set(fields):
        refuse(f"{key} must be an object with exactly {list(fields)}, got {show(raw)}")
    return raw


def _check_pooling(raw: Any, refuse: _Refuse) -> dict:
    pooling = _exact_keys(raw, names.POOLING, ("mode", "normalize"), refuse)
    if pooling["mode"] not in POOLING_MODES:
        refuse(f"{names.POOLING} mode {show(pooling['mode'])} is not one of {POOLING_MODES}")
    if not isinstance(pooling["normalize"], bool):
        refuse(f"{names.POOLING} normalize is {show(pooling['normalize'])}; it must be a JSON boolean")
    return pooling


def _check_tokenizer_config(raw: Any, tokenizer_json: str, config: dict, refuse: _Refuse) -> dict:
    key = names.TOKENIZER_CONFIG
    cfg = _exact_keys(raw, key, ("max_length", "pad_token_id"), refuse)
    positions = config["max_position_embeddings"] - config["position_offset"]
    for field, low, high in (("max_length", 2, positions), ("pad_token_id", 0, config["vocab_size"] - 1)):
        if not ops.is_int(cfg[field]) or not low <= cfg[field] <= high:
            refuse(f"{key} {field} is {show(cfg[field])}; it must be an integer in {low}..{high}")
    try:
        padding = top_level_value(tokenizer_json, "padding")  # not the whole vocabulary: cold start
    except (ValueError, AttributeError, RecursionError, IndexError):
        padding = None  # the tokenizer's own check refuses it
    if isinstance(padding, dict) and ops.is_int(padding.get("pad_id")) and padding["pad_id"] != cfg["pad_token_id"]:
        refuse.mismatch(key, "pad_token_id", cfg["pad_token_id"], padding["pad_id"], "the tokenizer's padding")
    return cfg


def _check_head(raw: Any, graph: dict, widths: dict, config: dict, refuse: _Refuse) -> dict | None:
    key, outputs = names.HEAD, list(graph["outputs"])
    per_sequence = ops.per_sequence_values(graph["nodes"])
    if "last_hidden_state" not in outputs or "last_hidden_state" in per_sequence:
        refuse("graph outputs must include the per-token last_hidden_state")
    if widths["last_hidden_state"] != config["hidden_size"]:
        refuse.mismatch(names.CONFIG, "hidden_size", config["hidden_size"], widths["last_hidden_state"],
                        "the graph's last_hidden_state")
    if raw is None:
        if outputs != ["last_hidden_state"]:
            refuse(f"graph outputs {show(outputs)} but {key} is absent (a bare encoder has last_hidden_state only)")
        return None
    task = raw.get("task") if isinstance(raw, dict) else None
    if not isinstance(task, str) or task not in HEAD_TASKS:
        refuse(f"{key} task is {show(task)}, not one of {', '.join(HEAD_TASKS)}")
    expect, extra = HEAD_TASKS[task]
    _exact_keys(raw, key, ("task",) + extra, refuse)
    described = {"last_hidden_state", *expect, *(o for o in OPTIONAL_OUTPUTS if o in outputs)}
    if set(outputs) != described:
        refuse(f"graph outputs {show(outputs)}, but {key} task {task!r} has {sorted(described)}")
    labels = raw.get("id2label")
    if "id2label" in raw and not (isinstance(labels, dict) and all(isinstance(v, str) for v in labels.values())
                                  and set(labels) == {str(i) for i in range(len(labels))}):
        refuse(f"{key} id2label must map '0'..'{len(labels) - 1 if isinstance(labels, dict) else 'n'}' "
               f"to label strings, got {show(labels)}")
    sizes = {"labels": len(labels) if isinstance(labels, dict) else None, "vocab": config["vocab_size"],
             "hidden": config["hidden_size"]}
    for name, (seq, width) in {**expect, **{o: OPTIONAL_OUTPUTS[o] for o in OPTIONAL_OUTPUTS if o in outputs}}.items():
        want = sizes[width] if isinstance(width, str) else width
        if widths[name] != want:
            refuse(f"{key} task {task!r} gives {name} {want} columns ({width}), but the graph gives {widths[name]}")
        if (name in per_sequence) != seq:
            refuse(f"graph output {name} has one row per {'token' if seq else 'sequence'}; "
                   f"task {task!r} needs one per {'sequence' if seq else 'token'}")
    if "problem_type" in raw and raw["problem_type"] not in PROBLEM_TYPES:
        refuse(f"{key} problem_type is {show(raw['problem_type'])}, not one of {PROBLEM_TYPES}")
    if "tied_decoder" in raw:
        vocab_output = next(o for o, (_, w) in expect.items() if w == "vocab")
        tied = next(n["op"] for n in graph["nodes"] if vocab_output in n["outputs"]) == "tied_linear"
        if raw["tied_decoder"] is not tied:
            refuse.mismatch(key, "tied_decoder", raw["tied_decoder"], tied, f"the graph node giving {vocab_output}")
    return raw


# ---------------------------------------------------------- report, calibration


def _finite(value: Any, low: float = -math.inf) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= low


def _check_report(raw: Any, tensors: Mapping[str, Any], refuse: _Refuse) -> dict:
    """Measured by the converter (not checkable without the source): typed, and about exactly the int8 tensors."""
    key, fields = names.REPORT, ("max_abs", "max_rel", "sqnr_db")
    quantized = {n for n, t in tensors.items() if C.dtype_name(t) == "I8"}
    if not isinstance(raw, dict) or set(raw) != quantized:
        listed = sorted(raw) if isinstance(raw, dict) else raw
        refuse(f"{key} lists {show(listed)}, but the int8 tensors are {show(sorted(quantized))}")
    for name, err in raw.items():
        if not (isinstance(err, dict) and set(err) == set(fields) and _finite(err["max_abs"], 0)
                and _finite(err["max_rel"], 0) and (err["sqnr_db"] is None or _finite(err["sqnr_db"]))):
            refuse(f"{key} entry {show(name)} must be {list(fields)} as finite numbers (sqnr_db may be null), "
                   f"got {show(err)}")
    return raw


def _check_source_quantization(raw: Any, tensors: Mapping[str, Any], refuse: _Refuse) -> dict:
    """A record of the converter (the source is gone): typed, naming weights of the right dtype once each."""
    key = names.SOURCE_QUANTIZATION
    rec = _exact_keys(raw, key, ("source", "kept", "requantized", "dequantized"), refuse)
    _label(rec["source"], key + " source", refuse)
    seen: set = set()
    for field, want_int8 in (("kept", True), ("requantized", True), ("dequantized", False)):
        listed = rec[field]
        if not isinstance(listed, list) or not all(isinstance(n, str) and n in tensors for n in listed):
            refuse(f"{key} {field} must list tensors of the file, got {show(listed)}")
        wrong = [n for n in listed if (C.dtype_name(tensors[n]) == "I8") != want_int8]
        if wrong or seen & set(listed):
            refuse(f"{key} {field} names {show(wrong or sorted(seen & set(listed)))}: "
                   f"{'not int8' if want_int8 else 'int8'} or listed twice")
        seen |= set(listed)
    return rec


def _check_outliers(raw: Any, content: C.Content, key: str, refuse: _Refuse) -> None:
    """``outliers`` ({"limit", "layers": {prefix: k}}) = the graph's linear ``outliers`` attrs; absent: none."""
    attrs = {p: content.attr(n, "outliers") for n, p in content.linears() if content.attr(n, "outliers") is not None}
    if raw is None:
        if attrs:
            refuse(f"{key} has no outliers, but linear nodes have outliers attrs: {sorted(attrs)[:4]}")
        return
    out = _exact_keys(raw, key + " outliers", ("limit", "layers"), refuse)
    if not ops.is_int(out["limit"]) or not 0 <= out["limit"] <= ops.MAX_OUTLIERS:
        refuse(f"{key} outliers limit is {show(out['limit'])}; it must be an integer in [0, {ops.MAX_OUTLIERS}]")
    if out["layers"] != attrs:
        refuse.mismatch(key, "outliers layers", out["layers"], attrs, "the graph's linear outliers attrs")


def _check_calibration(raw: Any, content: C.Content, quant: dict, refuse: _Refuse) -> dict:
    key = names.CALIBRATION
    if quant["weights"] != C.INT8_WEIGHTS:
        refuse(f"{key} is present, but the weights are {quant['weights']} (calibration is for int8)")
    kept = "float32_activations" if isinstance(raw, dict) and "float32_activations" in raw else "higher_precision"
    fields = ("calibration", "smoothquant", kept, "sensitivity_sqnr_db")
    cal = _exact_keys(raw, key, fields + (("outliers",) if isinstance(raw, dict) and "outliers" in raw else ()),
                      refuse)  # outliers: since 2026-11-28 (files before have none)
    source = _exact_keys(cal["calibration"], key + " calibration", ("texts", "source"), refuse)
    if not ops.is_int(source["texts"]) or source["texts"] < 0 or not isinstance(source["source"], str):
        refuse(f"{key} calibration needs texts (an integer >= 0) and source (a string), got {show(source)}")
    smooth = _exact_keys(cal["smoothquant"], key + " smoothquant", ("alpha", "layers"), refuse)
    if not (_finite(smooth["alpha"], 0) and smooth["alpha"] <= 1):
        refuse(f"{key} smoothquant alpha is {show(smooth['alpha'])}; it must be a number in [0, 1]")
    smoothed = sorted(n[:-len(names.INPUT_SCALE)] for n in content.tensors if n.endswith(names.INPUT_SCALE))
    if smooth["layers"] != smoothed:
        refuse.mismatch(key, "smoothquant layers", smooth["layers"], smoothed, "the .input_scale tensors")
    attrs = C.precision_attrs(content)
    if kept == "float32_activations":  # converters at 644bb49: {prefix: why}, every one float32
        said = {p: "float32" for p in cal[kept]} if isinstance(cal[kept], dict) else cal[kept]
        ok = isinstance(cal[kept], dict) and all(isinstance(w, str) for w in cal[kept].values())
    else:
        said = {p: v.get("activations") for p, v in cal[kept].items() if isinstance(v, dict)} \
            if isinstance(cal[kept], dict) else cal[kept]
        ok = isinstance(cal[kept], dict) and all(isinstance(v, dict) and set(v) == {"activations", "why"}
                                                 and isinstance(v["why"], str) for v in cal[kept].values())
    if not ok or said != attrs:
        refuse.mismatch(key, kept, said, attrs, "the graph's linear activations attrs")
    _check_outliers(cal.get("outliers"), content, key, refuse)
    sens, linears = cal["sensitivity_sqnr_db"], {p for _, p in content.linears()}
    if not isinstance(sens, dict) or not set(sens) <= linears or not all(
            v is None or _finite(v) for v in sens.values()):
        refuse(f"{key} sensitivity_sqnr_db must map the graph's linear layers to numbers, got {show(sens)}")
    return cal
