"""Task pipelines with the Hugging Face pipelines' conventions (inputs, outputs, options).

    clf = edgebert.pipeline("text-classification", model="sst2.edgebert")
    clf(["great film", "dull"], top_k=None)   # [[{"label", "score"}, ...], ...]

Every pipeline tokenizes with the model file's own tokenizer, batches by
length inside, and returns results per input in input order.
"""
from __future__ import annotations

import importlib

from ..errors import InputError

# task -> (module, class); aliases as transformers names them.
TASKS = {
    "feature-extraction": ("features", "FeatureExtractionPipeline"),
    "sentence-similarity": ("features", "SentenceSimilarityPipeline"),
    "text-classification": ("classification", "TextClassificationPipeline"),
    "next-sentence": ("classification", "NextSentencePipeline"),
    "zero-shot-classification": ("zero_shot", "ZeroShotClassificationPipeline"),
    "token-classification": ("token_classification", "TokenClassificationPipeline"),
    "question-answering": ("question_answering", "QuestionAnsweringPipeline"),
    "fill-mask": ("fill_mask", "FillMaskPipeline"),
    "summarization": ("summarization", "SummarizationPipeline"),
    "text-ranking": ("ranking", "TextRankingPipeline"),  # cross-encoders (rerankers)
}
ALIASES = {"sentiment-analysis": "text-classification", "ner": "token-classification"}


def supported_tasks() -> list[str]:
    return sorted(TASKS) + sorted(ALIASES)


def pipeline_class(task: str) -> type:
    """The class that runs ``task`` (or one of its aliases); its ``options`` declare its call options."""
    name = ALIASES.get(task, task)
    if name not in TASKS:
        raise InputError(f"unknown task {task!r}; supported tasks: {', '.join(supported_tasks())}")
    module, cls = TASKS[name]
    return getattr(importlib.import_module(f".{module}", __name__), cls)


def pipeline(task: str, model, **kwargs):
    """A pipeline for ``task`` over ``model`` (a ``.edgebert`` path or a loaded :class:`edgebert.Model`).

    ``kwargs``: ``batch_size``, ``threads`` and the task's default call options.
    """
    return pipeline_class(task)(model, **kwargs)


def options_schema(task: str) -> dict:
    """The JSON Schema of ``task``'s call options (a request body's ``parameters``)."""
    from .options import json_schema

    return json_schema(pipeline_class(task).options)
