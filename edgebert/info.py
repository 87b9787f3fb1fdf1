"""``edgebert info``: what the reader verified about a file, and which fields it derived.

Everything shown went through edgebert/description.py: the payload checksum,
the graph, and every descriptive field checked against the graph and tensors
(or derived from them, and marked so). Provenance (the converter's source
class) and the converter's error measurements are labelled as such: they are
records, not properties the content could confirm.
"""
from __future__ import annotations

import os

from . import names
from .description import describe
from .format import read_model


def file_info(path) -> dict:
    """The verified description of the file at ``path`` as plain JSON-able data."""
    model_file = read_model(path)  # checks the payload checksum
    desc = describe(model_file)
    worst = sorted(desc.report.items(), key=lambda kv: -kv[1]["max_rel"])[:3]
    return {
        "file_bytes": os.path.getsize(path),
        "format_version": model_file.metadata[names.VERSION],
        "architecture": desc.provenance.get(names.ARCHITECTURE),
        "source_architecture": desc.provenance.get(names.SOURCE_ARCHITECTURE),
        "config": desc.config,
        "quantization": desc.quantization,
        "pooling": desc.pooling,
        "max_length": desc.tokenizer_config["max_length"],
        "pad_token_id": desc.tokenizer_config["pad_token_id"],
        "head": desc.head,
        "outputs": list(desc.graph["outputs"]),
        "tensors": len(model_file.tensors),
        "parameters": int(sum(t.size for n, t in model_file.tensors.items() if not n.endswith(names.SCALE))),
        "worst_errors": worst,
        "calibration": desc.calibration,
        "source_quantization": desc.source_quantization,
        "derived": desc.derived,
        "unknown_keys": list(desc.unknown_keys),
    }


def format_info(info: dict, path: str) -> list[str]:
    """The text ``edgebert info`` prints; fields derived from the content carry a '*'."""
    cfg, q, derived = info["config"], info["quantization"], info["derived"]
    star = {key.split(".", 1)[1] for key in derived}
    lines = [
        f"file          {path} ({info['file_bytes'] / 2**20:.1f} MiB), format {info['format_version']}, "
        "payload checksum verified",
        f"shape         {cfg['num_layers']} layers, hidden {cfg['hidden_size']}, {cfg['num_heads']} heads, "
        f"ffn {cfg['intermediate_size']}, vocab {cfg['vocab_size']}, positions {cfg['max_position_embeddings']}, "
        f"token types {cfg['type_vocab_size']}, eps {cfg['layer_norm_eps']:g}   (checked against the graph)",
        "architecture  " + ", ".join(f"{k} {cfg[k]}{'*' if k in star else ''}" for k in cfg
                                     if k not in ("vocab_size", "hidden_size", "num_layers", "num_heads",
                                                  "intermediate_size", "max_position_embeddings",
                                                  "type_vocab_size", "layer_norm_eps")),
        f"parameters    {info['parameters']:,} in {info['tensors']} tensors",
        "quantization  " + ", ".join(f"{k} {v}{'*' if k in star else ''}" for k, v in q.items()
                                     if k != "scale_convention") + "   (checked against the tensor dtypes)",
        f"pooling       {info['pooling']['mode']}, normalize {str(info['pooling']['normalize']).lower()}; "
        f"max_length {info['max_length']}, pad_token_id {info['pad_token_id']}",
        f"outputs       {', '.join(info['outputs'])}"
        + (f" (head: {info['head']['task']})" if info["head"] else " (bare encoder)"),
        f"converted     from {info['source_architecture'] or '?'} ({info['architecture']}), as the converter "
        "recorded it",
    ]
    by_reason: dict[str, list[str]] = {}
    for key, why in derived.items():
        by_reason.setdefault(why, []).append(key)
    for why, keys in by_reason.items():
        lines.append(f"derived       *{', '.join(keys)}: {why}")
    if info["unknown_keys"]:
        lines.append(f"unknown keys  {', '.join(info['unknown_keys'])} (not read by this version)")
    for name, err in info["worst_errors"]:
        sqnr = "n/a" if err["sqnr_db"] is None else f"{err['sqnr_db']:.1f} dB"
        lines.append(f"worst error   {name}: max abs {err['max_abs']:.3g}, max rel {err['max_rel']:.4f}, "
                     f"SQNR {sqnr} (measured by the converter)")
    src = info.get("source_quantization")
    if src:
        lines.append(f"source int8   {src['source']}: {len(src['kept'])} weights kept exactly (the source's int8 "
                     f"values and scales), {len(src['requantized'])} dequantized and requantized"
                     + (f", {len(src['dequantized'])} dequantized to float32" if src["dequantized"] else "")
                     + " (recorded by the converter)")
    cal = info["calibration"]
    if cal:
        lines.append(f"calibration   {cal['calibration']['texts']} texts ({cal['calibration']['source']}); "
                     f"SmoothQuant alpha {cal['smoothquant']['alpha']} on {len(cal['smoothquant']['layers'])} "
                     "layers (the .input_scale tensors)")
        sens = sorted(((k, v) for k, v in cal["sensitivity_sqnr_db"].items() if v is not None), key=lambda kv: kv[1])
        if sens:
            lines.append("most sensitive " + ", ".join(f"{k} ({v:.1f} dB)" for k, v in sens[:3]))
        kept = cal.get("higher_precision") or {k: {"activations": "float32", "why": v}
                                               for k, v in cal.get("float32_activations", {}).items()}
        for name, entry in kept.items():
            lines.append(f"kept {entry['activations']:8s} {name}: {entry['why']}")
        if not kept:
            lines.append("kept          every linear layer in int8")
        outliers = cal.get("outliers")
        if outliers is not None:  # files from before outlier channels have no record
            layers = outliers["layers"]
            lines.append(f"outliers      {sum(layers.values())} float32 input channels in {len(layers)} linear layers "
                         f"(up to {outliers['limit']} a layer)" if layers else
                         f"outliers      none (up to {outliers['limit']} a layer were allowed)")
    return lines
