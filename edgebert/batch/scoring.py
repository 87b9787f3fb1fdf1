"""What a batch job computes per shard: embeddings, or a task pipeline's results.

``prepare`` (on the reader thread) checks and tokenizes; ``compute`` (on the main
thread) runs the model. A record that fails either is rejected with the reason,
never the run: the shard is retried record by record to find it.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError
from ..text import as_text
from .sources import Fields


@dataclass(frozen=True)
class Prepared:
    records: list  # 1-based record numbers
    ids: list
    inputs: list  # token encodings (embed) or the pipeline's inputs


class Scorer:
    def __init__(self, model, task: str, options: dict, truncate: bool, batch_size: int, fields: Fields):
        self.model, self.task, self.truncate, self.batch_size = model, task, truncate, batch_size
        self.pairs = bool(fields.pair)
        if task == "embed":
            if fields.pair or options:
                raise InputError("embed takes no text pairs and no task options")
            return
        from ..pipelines import pipeline, pipeline_class

        declared = {o.name for o in pipeline_class(task).options}
        if "truncation" in declared and "truncation" not in options:
            options = {**options, "truncation": truncate}
        self.pipe = pipeline(task, model=model, batch_size=batch_size, **options)  # options checked here

    def prepare(self, records: list, first: int) -> tuple[Prepared, list[dict]]:
        numbers, ids, texts, rejects = [], [], [], []
        for n, r in enumerate(records, start=first):
            try:
                if r.reason:
                    raise InputError(r.reason)
                text = as_text(r.text, n)
                texts.append({"text": text, "text_pair": as_text(r.pair, n)} if self.pairs else text)
                numbers.append(n)
                ids.append(r.id)
            except InputError as e:
                rejects.append({"record": n, "id": r.id, "reason": str(e)})
        if self.task != "embed":
            return Prepared(numbers, ids, texts), rejects
        try:
            encoded = self.model.tokenize(texts, self.truncate)
        except InputError:
            prepared, more = self._one_by_one(Prepared(numbers, ids, texts),
                                              lambda t: self.model.tokenize([t], self.truncate))
            return Prepared(prepared.records, prepared.ids, [e for (e,) in prepared.inputs]), \
                sorted(rejects + more, key=lambda r: r["record"])
        return Prepared(numbers, ids, encoded), rejects

    def compute(self, prepared: Prepared) -> tuple[list, object, list[dict]]:
        """(ids kept, their values, rejects found while computing)."""
        if self.task == "embed":
            return prepared.ids, self.model.embed_tokenized(prepared.inputs, self.batch_size), []
        try:
            return prepared.ids, self.pipe(prepared.inputs), []
        except InputError:
            kept, more = self._one_by_one(prepared, lambda item: self.pipe([item]))
            return kept.ids, [v for (v,) in kept.inputs], more

    def _one_by_one(self, prepared: Prepared, run) -> tuple[Prepared, list[dict]]:
        """``run`` on each input alone: the ones that fail become rejects."""
        numbers, ids, outputs, rejects = [], [], [], []
        for n, rid, item in zip(prepared.records, prepared.ids, prepared.inputs):
            try:
                outputs.append(run(item))
                numbers.append(n)
                ids.append(rid)
            except InputError as e:
                rejects.append({"record": n, "id": rid, "reason": str(e).replace("text 0", f"record {n}")
                                .replace("input 0", f"record {n}")})
        return Prepared(numbers, ids, outputs), rejects

