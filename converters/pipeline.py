"""One pipeline for every source: load -> validate -> quantize -> save."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgebert import names
from edgebert.errors import InvalidModelFile, UnsupportedModel
from edgebert.text import check_tokenizer

from . import albert, bert, deberta, distilbert, electra, modernbert, mpnet, roberta  # noqa: F401  (register the families' loaders)
from . import calibrate as calibrate_mod
from . import quantize
from .graph import build_graph
from .registry import get_loader
from .source import read_json
from .spec import ModelSpec

DTYPES = ("int8", "float32")


def convert(src: str | Path, out: str | Path, dtype: str = "int8", allow_pickle: bool = False,
            calibrate: str | Path | None = None, smooth_alpha: float = calibrate_mod.DEFAULT_ALPHA,
            keep: int = calibrate_mod.DEFAULT_KEEP, keep_as: str = "int16",
            tokenizer: str | Path | None = None, outliers: int = calibrate_mod.DEFAULT_OUTLIERS) -> dict:
    """Convert a model folder into one ``.edgebert`` file; returns the per-tensor error report.

    int8 only: ``calibrate`` is a text file (one text per line) for SmoothQuant
    and the sensitivity ranking (default: the built-in set); ``smooth_alpha``
    0 turns smoothing off; ``keep`` is how many of the most sensitive linear
    layers run with higher-precision activations (``keep_as`` int16 or
    float32): the size/speed budget; ``outliers`` is the most input channels
    per linear kept out of the int8 activations and computed in float32 (0: none).
    """
    from edgebert.format import write_model

    if dtype not in DTYPES:
        raise UnsupportedModel(f"dtype {dtype!r} is not supported; supported: {', '.join(DTYPES)}")
    spec = load(src, allow_pickle=allow_pickle, tokenizer=tokenizer)
    validate(spec)
    if spec.prequantized:  # weights kept from an int8 source cannot be smoothed, nor their columns moved out
        smooth_alpha, outliers = 0.0, 0
    plan = None
    if dtype == "int8":
        texts, source = calibrate_mod.calibration_texts(calibrate)
        plan = calibrate_mod.make_plan(spec, texts, source, alpha=smooth_alpha, keep=keep,
                                       keep_as=keep_as, outliers=outliers)
        for name, kept in spec.prequantized.items():  # a source's SmoothQuant scales, kept with its int8
            if len(kept) > 2:
                plan.smooth[name.removesuffix(names.WEIGHT)] = 1.0 / kept[2]
        if spec.outliers:  # the source's own outlier channels (our export); none are chosen for kept weights
            plan.outliers = dict(spec.outliers)
        if spec.higher_precision:  # the source's own higher-precision layers (our export) replace the choice
            plan.higher = {p: {"activations": a, "why": "as in the source file"}
                           for p, a in sorted(spec.higher_precision.items())}
    tensors, report = quantize_spec(spec, dtype, plan)
    write_model(out, tensors, metadata(spec, dtype, report, plan))
    return report


# The encoder a config.json without ``architectures`` stands for (AutoModel's choice): old BERT
# checkpoints, and Microsoft's DeBERTa-v2/v3 releases (microsoft/deberta-v3-base)
BARE_BY_MODEL_TYPE = {"bert": "BertModel", "deberta-v2": "DebertaV2Model"}


def load(src: str | Path, allow_pickle: bool = False, tokenizer: str | Path | None = None) -> ModelSpec:
    folder = Path(src)
    if folder.suffix.lower() == ".onnx":  # an ONNX export, mapped by structure (converters/onnx_source.py)
        from .onnx_source import load_onnx
        return load_onnx(folder, tokenizer=tokenizer)
    if not folder.is_dir():
        raise UnsupportedModel(f"{folder}: not a model folder (expected a directory with config.json)")
    cfg = read_json(folder / "config.json")
    archs = cfg.get("architectures") or []
    if not isinstance(archs, list) or len(archs) != 1 or not isinstance(archs[0], str):
        if cfg.get("model_type") in BARE_BY_MODEL_TYPE and not archs:
            archs = [BARE_BY_MODEL_TYPE[cfg["model_type"]]]  # checkpoints saved without an architectures field
        else:
            raise UnsupportedModel(f"{folder}/config.json: expected one entry in 'architectures', got {archs!r}")
    return get_loader(archs[0])(folder, cfg, allow_pickle=allow_pickle)


def validate(spec: ModelSpec) -> None:
    missing = spec.missing()
    if missing:
        raise UnsupportedModel(f"model lacks weights: {', '.join(missing[:5])}")
    for name, slot in spec.slots.items():
        if not np.isfinite(slot.value).all():
            raise UnsupportedModel(f"weight {name} holds NaN or infinite values")
    try:
        check_tokenizer(spec.tokenizer_json, spec.config.vocab_size)
    except InvalidModelFile as e:
        raise UnsupportedModel(str(e)) from None
    if not 2 <= spec.max_length <= spec.config.max_positions:
        raise UnsupportedModel(f"max_length {spec.max_length} outside 2..{spec.config.max_positions}")


def quantize_spec(spec: ModelSpec, dtype: str, plan=None) -> tuple[dict[str, np.ndarray], dict]:
    """Standard-named tensors ready to save, and the worst error of each quantized one.

    With a plan, smoothed linears store ``W * s`` and ``input_scale = 1/s``; a linear with outlier
    channels stores zeros in its int8 weight there and the layer's own float32 columns beside it.
    """
    tensors, report = {}, {}
    for name, slot in spec.slots.items():
        if dtype == "int8" and slot.quantized:
            base = name.removesuffix(names.WEIGHT)
            w = slot.value
            s = plan.smooth.get(base) if plan is not None else None
            if s is not None:
                w = w * s[None, :]
                tensors[base + names.INPUT_SCALE] = (1.0 / s).astype(np.float32)
            idx = plan.outliers.get(base) if plan is not None else None
            if idx is not None:  # the columns the runtime computes in float32 leave the int8 weight
                tensors[base + names.OUTLIERS] = idx
                tensors[base + names.OUTLIER_WEIGHT] = np.ascontiguousarray(slot.value[:, idx], np.float32)
                w = np.array(w, np.float32)
                w[:, idx] = 0
            q, scale, err = quantize.quantize_rows(w)
            if spec.prequantized.get(name, (None,))[0] is not None:  # the source's int8, no second rounding
                q, scale = spec.prequantized[name][:2]
                if len(spec.prequantized[name]) > 2:  # and its input scale, exactly (not 1 / (1 / x))
                    tensors[base + names.INPUT_SCALE] = spec.prequantized[name][2]
                err = quantize.measure_error(w, quantize.dequantize_rows(q, scale))
            tensors[name], tensors[base + names.SCALE] = q, scale
            report[name] = err.as_dict()
        else:
            tensors[name] = slot.value
    return tensors, report


def metadata(spec: ModelSpec, dtype: str, report: dict, plan=None) -> dict:
    if dtype == "int8":
        scheme = {"weights": "int8_symmetric_per_channel", "embeddings": "int8_symmetric_per_row",
                  "activations": "uint8_asymmetric_per_token_dynamic",
                  "scale_convention": "w ~= q * scale[:, None]; scale = amax / 127"}
    else:
        scheme = {"weights": "float32", "embeddings": "float32", "activations": "float32"}
    meta = {
        names.ARCHITECTURE: spec.architecture,
        names.SOURCE_ARCHITECTURE: spec.source_architecture,
        names.CONFIG: spec.config.as_dict(),
        names.QUANTIZATION: scheme,
        names.GRAPH: _mark_precision(build_graph(spec.config, spec.head, spec.head_graph), plan),
        names.TOKENIZER: spec.tokenizer_json,
        names.TOKENIZER_CONFIG: {"max_length": spec.max_length, "pad_token_id": spec.pad_token_id},
        names.POOLING: spec.pooling,
        names.REPORT: report,
    }
    if spec.head is not None:
        meta[names.HEAD] = spec.head
    if plan is not None:
        meta[names.CALIBRATION] = plan.summary()
    if spec.prequantized:
        meta[names.SOURCE_QUANTIZATION] = source_quantization(spec, dtype)
    return meta


def source_quantization(spec: ModelSpec, dtype: str) -> dict:
    """Which weights came as int8 from the source, and what became of them (edgebert info says)."""
    kept = sorted(n for n, kept in spec.prequantized.items() if kept[0] is not None and dtype == "int8")
    requantized = sorted(n for n in spec.prequantized if n not in kept and dtype == "int8")
    return {"source": f"ONNX int8 ({spec.prequantized_from or 'DynamicQuantizeLinear + MatMulInteger'})",
            "kept": kept, "requantized": requantized,
            "dequantized": sorted(spec.prequantized) if dtype != "int8" else []}


def _mark_precision(graph: dict, plan) -> dict:
    """Linear nodes the plan keeps in higher precision, or with outlier channels, say so in their attrs."""
    for node in graph["nodes"]:
        if plan is None or node["op"] != "linear":
            continue
        prefix = node["params"]["linear"]
        if prefix in plan.higher:
            node["attrs"]["activations"] = plan.higher[prefix]["activations"]
        if prefix in plan.outliers:
            node["attrs"]["outliers"] = int(len(plan.outliers[prefix]))
    return graph


