"""``edgebert verify``: how far a converted model is from its FP32 reference, in numbers.

Per-layer SQNR (dB) of the hidden states (embeddings first), cosine and max
error of the final outputs, nearest-neighbour agreement of the embeddings,
and the blocks that lose the most (the largest SQNR drop from their input to
their output; the embeddings' own SQNR is in the per-layer table).
"""
from __future__ import annotations

import numpy as np

from .converters.quantize import measure_error
from .reference import load_reference


def sqnr_db(ref: np.ndarray, got: np.ndarray) -> float:
    """10 log10(signal power / error power); +inf when identical (the converter's own measure)."""
    return measure_error(ref, got).sqnr_db


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    norms = np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
    return (a64 * b64).sum(axis=1) / np.maximum(norms, 1e-30)


def nn_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of items whose nearest other item (by cosine) is the same in a and in b."""
    if len(a) < 2:
        return 1.0
    def nearest(x):
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-30)
        sims = x @ x.T
        np.fill_diagonal(sims, -np.inf)
        return sims.argmax(axis=1)
    return float((nearest(a) == nearest(b)).mean())


def verify(model, reference_path: str) -> dict:
    """Compare ``model`` (an edgebert Model) with a reference .npz; returns the report dict."""
    ref = load_reference(reference_path)
    lengths = ref["lengths"]
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    n_layer_texts = ref["meta"]["layer_texts"]
    layer_rows = int(offsets[n_layer_texts])
    states = model.hidden_states_packed(ref["input_ids"][:layer_rows], lengths[:n_layer_texts])
    per_layer = []
    for i, got in enumerate(states):
        want = ref["hidden_states"][i]
        per_layer.append({"layer": i, "name": "embeddings" if i == 0 else f"block {i - 1}",
                          "sqnr_db": _finite(sqnr_db(want, got)), "max_abs_error": float(np.abs(want - got).max()),
                          "mean_cosine": float(row_cosines(want, got).mean())})
    # What each block adds to the error: the SQNR drop from its input to its output.
    losses = [{"layer": p["layer"], "name": p["name"], "sqnr_drop_db": per_layer[i - 1]["sqnr_db"] - p["sqnr_db"]}
              for i, p in enumerate(per_layer) if i > 0]
    final = states[-1]
    want_final = ref["hidden_states"][-1]
    pooled = model.pool_packed_ids(ref["input_ids"], lengths)
    cos = row_cosines(pooled, ref["pooled"])
    report = {
        "model": str(model.file.path), "reference": str(reference_path), "reference_meta": ref["meta"],
        "quantization": model.quantization, "texts": int(len(lengths)),
        "per_layer": per_layer,
        "final": {"mean_cosine": float(row_cosines(final, want_final).mean()),
                  "worst_cosine": float(row_cosines(final, want_final).min()),
                  "max_abs_error": float(np.abs(final - want_final).max()),
                  "sqnr_db": per_layer[-1]["sqnr_db"]},
        "embeddings": {"mean_cosine": float(cos.mean()), "worst_cosine": float(cos.min()),
                       "max_abs_error": float(np.abs(pooled - ref["pooled"]).max()),
                       "nn_agreement": nn_agreement(pooled, ref["pooled"])},
        "worst_layers": sorted(losses, key=lambda x: -x["sqnr_drop_db"])[:3],
    }
    return report


_CAP_DB = 200.0  # stands for "exact" where a float is needed (JSON has no infinity)


def _finite(x: float) -> float:
    return min(float(x), _CAP_DB)


def format_report(r: dict) -> str:
    lines = [f"verify {r['model']} against {r['reference']} ({r['reference_meta']['device']}, "
             f"{r['texts']} texts)", "layer            SQNR dB   max abs err   mean cosine"]
    for p in r["per_layer"]:
        lines.append(f"{p['name']:15s} {p['sqnr_db']:8.2f}   {p['max_abs_error']:11.4f}   {p['mean_cosine']:.6f}")
    e, f = r["embeddings"], r["final"]
    lines += [f"last hidden state: mean cosine {f['mean_cosine']:.5f}, worst {f['worst_cosine']:.5f}, "
              f"max abs error {f['max_abs_error']:.4f}",
              f"embeddings: mean cosine {e['mean_cosine']:.5f}, worst {e['worst_cosine']:.5f}, "
              f"nearest-neighbour agreement {e['nn_agreement']:.3f}",
              "layers that lose the most: " + ", ".join(f"{w['name']} ({w['sqnr_drop_db']:.1f} dB)"
                                                        for w in r["worst_layers"])]
    return "\n".join(lines)
