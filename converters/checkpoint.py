"""Source tensors by name, as transformers sees them after loading a checkpoint.

transformers renames legacy parameter names on load (``LayerNorm.gamma`` ->
``LayerNorm.weight``, ``LayerNorm.beta`` -> ``LayerNorm.bias``: BERT
checkpoints ported from TensorFlow) and finds the encoder under its base
prefix (``bert.``) or none; so does this class. What a converter took is
remembered, so leftovers can be refused instead of silently dropped.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgebert.errors import UnsupportedModel

# Legacy suffix -> the name transformers loads it as (PreTrainedModel._fix_state_dict_key_on_load).
LEGACY_SUFFIXES = {"LayerNorm.gamma": "LayerNorm.weight", "LayerNorm.beta": "LayerNorm.bias"}


def modern_name(name: str) -> str:
    for old, new in LEGACY_SUFFIXES.items():
        if name.endswith(old):
            return name[:-len(old)] + new
    return name


class Checkpoint:
    """Source tensors by (modern) name; remembers what was taken so leftovers can be refused."""

    def __init__(self, weights: dict[str, np.ndarray], where: Path):
        self.weights: dict[str, np.ndarray] = {}
        for name, value in weights.items():
            modern = modern_name(name)
            if modern in self.weights:
                raise UnsupportedModel(f"{where}: checkpoint holds {modern!r} twice (once under a legacy name)")
            self.weights[modern] = value
        self.where, self.used = where, set()
        self.zero_biases = False  # a missing ``X.bias`` beside ``X.weight`` reads as zeros (biasless layers)

    def __contains__(self, name: str) -> bool:
        return name in self.weights

    def take(self, name: str) -> np.ndarray:
        if name not in self.weights:
            weight = name[:-len(".bias")] + ".weight"
            if self.zero_biases and name.endswith(".bias") and weight in self.weights:
                return np.zeros(self.weights[weight].shape[0], dtype=np.float32)
            raise UnsupportedModel(f"{self.where}: checkpoint lacks weight {name!r}")
        self.used.add(name)
        return self.weights[name]

    def take_any(self, *candidates: str) -> np.ndarray:
        """The first of ``candidates`` present (a tensor saved under either of its tied names)."""
        for name in candidates:
            if name in self.weights:
                return self.take(name)
        return self.take(candidates[0])  # raises, naming the usual one

    def base_prefix(self, probe: str, prefixes: tuple[str, ...]) -> str:
        """The one prefix of ``prefixes`` under which ``probe`` (e.g. the word embeddings) is found."""
        found = [p for p in prefixes if p + probe in self.weights]
        if len(found) != 1:
            tried = ", ".join(repr(p + probe) for p in prefixes)
            raise UnsupportedModel(f"{self.where}: expected exactly one of {tried} in the checkpoint, "
                                   f"found {len(found)}")
        return found[0]

    def refuse_unused(self, ignored_suffixes: tuple[str, ...] = ()) -> None:
        unused = [n for n in self.weights if n not in self.used and not n.endswith(ignored_suffixes)]
        if unused:
            raise UnsupportedModel(f"{self.where}: weights this converter does not understand: "
                                   f"{', '.join(sorted(unused)[:5])}{' ...' if len(unused) > 5 else ''}")
