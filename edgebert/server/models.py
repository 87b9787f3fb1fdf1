"""The served models: names, what each can do, and its work (run on its batcher's thread)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from .batching import Batcher
from .http import ApiError

CLASSIFIER = "sequence-classification"
KINDS = ("embedding", "classifier", "reranker")  # what a route needs; reranker: a one-label classifier


def parse_specs(specs: list[str]) -> list[tuple[str, Path]]:
    """``PATH`` or ``NAME=PATH`` -> (name, path); the name defaults to the file name without
    its extension. Names must be unique and not ``default`` (it names the first model)."""
    out = []
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            name, path = Path(spec).stem, spec
        if not name or name == "default":
            raise InputError(f"model {spec!r}: the name must be non-empty and not 'default'")
        if not Path(path).is_file():
            raise InputError(f"model {name}: {path} is not a file")
        if name in (n for n, _ in out):
            raise InputError(f"two models are named {name!r}; give one a name with NAME=PATH")
        out.append((name, Path(path)))
    return out


@dataclass
class Served:
    name: str
    model: object  # edgebert.Model
    batcher: Batcher
    loaded_s: float  # load and warm-up time
    _pipes: dict = field(default_factory=dict)

    @property
    def kinds(self) -> tuple[str, ...]:
        head = self.model.head or {}
        if head.get("task") == CLASSIFIER:
            return ("classifier", "reranker") if len(head.get("id2label", {})) == 1 else ("classifier",)
        return ("embedding",) if not head else ()

    def pipeline(self, task: str):
        """The model's ``task`` pipeline, made once (its tokenizer is its own; used on the model's thread)."""
        if task not in self._pipes:
            from ..pipelines import pipeline

            self._pipes[task] = pipeline(task, model=self.model, batch_size=self.batcher.limits.batch_size)
        return self._pipes[task]

    def describe(self) -> dict:
        m = self.model
        info = {"model_id": self.name, "model_path": str(m.file.path), "model_dtype": m.quantization.get("weights"),
                "max_input_length": m.max_length, "kinds": list(self.kinds)}
        if "embedding" in self.kinds:
            info["model_type"] = {"embedding": {"pooling": m.pooling.get("mode"), "dimensions": m.dim,
                                                "normalized": bool(m.pooling.get("normalize"))}}
        elif "classifier" in self.kinds:
            labels = m.head["id2label"]
            key = "reranker" if "reranker" in self.kinds else "classifier"
            info["model_type"] = {key: {"id2label": labels, "label2id": {v: int(k) for k, v in labels.items()}}}
        return info


def load_served(name: str, path: Path, threads: int, limits, metrics) -> Served:
    """Load a file and run every graph output once, so no request waits for kernel loading."""
    from .. import load

    start = time.perf_counter()
    model = load(path, threads=threads)
    model.forward_sequences(model.tokenize(["edgebert warm-up"]), outputs=None)
    batcher = Batcher(name, lambda encoded: model.embed_tokenized(encoded, limits.batch_size), limits, metrics)
    return Served(name, model, batcher, time.perf_counter() - start)


class Registry:
    """Models by name, in command-line order; ``default`` is the first."""

    def __init__(self, served: list[Served]):
        self.models = {s.name: s for s in served}

    def pick(self, name: str | None, kind: str) -> Served:
        """The named model (404 listing the loaded ones), or the first that is a ``kind``
        ("any": the first); 400 when the model cannot do what the route needs."""
        if name is None:
            for s in self.models.values():
                if kind == "any" or kind in s.kinds:
                    return s
            raise ApiError(400, f"no loaded model serves this route (it needs a {kind} model); loaded: "
                                f"{self._listing()}")
        served = next(iter(self.models.values())) if name == "default" else self.models.get(name)
        if served is None:
            raise ApiError(404, f"model {name!r} is not loaded; loaded: {self._listing()}")
        if kind != "any" and kind not in served.kinds:
            what = ", ".join(served.kinds) or f"a model with a {served.model.head['task']} head"
            raise ApiError(400, f"model {served.name!r} is not a {kind} model (it is: {what})")
        return served

    def _listing(self) -> str:
        return ", ".join(f"{n} ({'/'.join(s.kinds) or 'other'})" for n, s in self.models.items())

    def close(self, timeout: float | None = None) -> None:
        for s in self.models.values():
            s.batcher.close(timeout)


def normalized(vectors: np.ndarray) -> np.ndarray:
    """Unit rows, in float32 as torch.nn.functional.normalize (and Model._pool) computes them."""
    out = vectors.copy()
    for row in out:
        row /= max(float(np.linalg.norm(row)), 1e-12)
    return out
