"""What every pipeline shares: the model, its tokenizer, input checks, batched runs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from tokenizers import Encoding, Tokenizer

from .. import names
from ..errors import InputError
from ..model import Model, load
from ..text import as_text
from .options import Option, resolve


class Pipeline:
    task = ""
    heads: tuple[str, ...] = ()  # head tasks this pipeline runs on; () = any model
    options: tuple[Option, ...] = ()  # its call options, declared once (see options.py)

    def __init__(self, model, batch_size: int = 32, threads: int | None = None, **defaults):
        if isinstance(model, (str, Path)):
            model = load(model, threads=threads)
        if not isinstance(model, Model):
            raise InputError(f"model must be a .edgebert path or an edgebert.Model, got {type(model).__name__}")
        task = (model.head or {}).get("task")
        if self.heads and task not in self.heads:
            raise InputError(f"{self.task} needs a model with a {' or '.join(self.heads)} head; "
                             f"{model.file.path} has {task or 'no head (a bare encoder)'}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
        resolve(self.options, defaults, self.task)  # a wrong default fails here, not at the first call
        self.model, self.batch_size, self.defaults = model, batch_size, defaults
        # Our own instance: truncation settings differ per call and per task.
        self.tokenizer = Tokenizer.from_str(model.file.metadata[names.TOKENIZER])
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()

    def __call__(self, inputs, **kwargs):
        """One input -> its result; a list of inputs -> a list of results in input order."""
        single = not isinstance(inputs, (list, tuple))
        items = [inputs] if single else list(inputs)
        if not items:
            return []
        results = self.process(items, **resolve(self.options, {**self.defaults, **kwargs}, self.task))
        return results[0] if single else results

    def process(self, items: list, **options) -> list:
        raise NotImplementedError

    # ---- helpers --------------------------------------------------------------
    def labels(self) -> list[str]:
        id2label = self.model.head["id2label"]
        return [id2label[str(i)] for i in range(len(id2label))]

    def encode(self, texts: list, pairs: list | None = None, truncation: bool = False,
               max_length: int | None = None) -> list[Encoding]:
        """Encodings (with offsets); over-long inputs are cut (``truncation``, to ``max_length``
        or the model's maximum) or refused."""
        texts = [as_text(t, i) for i, t in enumerate(texts)]
        limit = self.model.max_length
        if max_length is not None and max_length > limit:
            raise InputError(f"max_length {max_length} is more than the model's maximum of {limit} tokens")
        if truncation:
            self.tokenizer.enable_truncation(max_length or limit, strategy="longest_first")
        try:
            if pairs is None:
                encodings = self.tokenizer.encode_batch(texts)
            else:
                pairs = [as_text(t, i) for i, t in enumerate(pairs)]
                encodings = self.tokenizer.encode_batch(list(zip(texts, pairs)))
        finally:
            self.tokenizer.no_truncation()
        for i, enc in enumerate(encodings):
            if len(enc.ids) > limit:
                raise InputError(f"input {i} has {len(enc.ids)} tokens, more than the model's maximum of "
                                 f"{limit}; pass truncation=True to cut it")
        return encodings

    def run(self, encodings: list[Encoding], outputs: list[str]) -> list[dict]:
        return self.model.forward_sequences([(e.ids, e.type_ids) for e in encodings], outputs=outputs,
                                            batch_size=self.batch_size)


# Probabilities in the logits' own precision (float32 from the engine), as transformers'
# pipelines compute them: scores that round to the same float32 there (a saturated
# sigmoid, a near-tie) round alike here, so they rank alike.
def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = np.asarray(x)
    x = x.astype(np.result_type(x.dtype, np.float32), copy=False)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    x = x.astype(np.result_type(x.dtype, np.float32), copy=False)
    with np.errstate(over="ignore"):  # exp(-x) = inf for x < -88 gives 0, as it should
        return 1.0 / (1.0 + np.exp(-x))


def tokenizer_options(settings: dict | None, truncation, name: str) -> tuple[bool, int | None]:
    """(truncation, max_length) from transformers' tokenizer kwargs (``name``: the option's name
    in that pipeline, already checked) and the ``truncation`` option; ``max_length`` alone
    truncates, as there."""
    settings = dict(settings or {})
    if truncation is not None:
        if "truncation" in settings:
            raise InputError(f"truncation given twice (as an option and in {name})")
        settings["truncation"] = truncation
    max_length, cut = settings.get("max_length"), settings.get("truncation")
    return bool(cut) or (max_length is not None and cut is None), max_length
