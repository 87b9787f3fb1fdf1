"""Request bodies, declared with the pipelines' typed options (``pipelines/options.py``).

One declaration per field gives its check (a 422 naming the field), its default and its
JSON Schema (``/openapi.json``); ``/predict``'s ``parameters`` are text-classification's
own declared options, so a new pipeline option is accepted here without an edit.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError
from ..pipelines import pipeline_class
from ..pipelines.options import Bool, Choice, Int, Option, Settings, Text, Texts, json_schema, resolve
from .http import ApiError


@dataclass(frozen=True)
class Body:
    """A JSON object of declared fields; ``required`` ones must be present and not null."""

    route: str
    fields: tuple[Option, ...]
    required: tuple[str, ...] = ()

    def parse(self, data) -> dict:
        if not isinstance(data, dict):
            raise ApiError(422, f"{self.route}: the request body must be a JSON object, got {_json_type(data)}")
        for name in self.required:
            if data.get(name) is None:
                raise ApiError(422, f"{self.route}: field {name!r} is required")
        try:
            return resolve(self.fields, data, self.route)
        except InputError as e:
            raise ApiError(422, f"{self.route}: {e}") from None

    def json_schema(self) -> dict:
        return {**json_schema(self.fields), "required": list(self.required)}


@dataclass(frozen=True)
class Inputs(Texts):
    """One text or a non-empty list of texts."""

    def convert(self, value):
        texts = super().convert(value)
        if not texts:
            self.fail("a text or a non-empty list of texts", value)
        return texts

    def schema(self) -> dict:
        return {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]}


@dataclass(frozen=True)
class ClassifierInputs(Option):
    """A text, a list of texts, or pairs: ``[first, second]`` lists or ``{"text", "text_pair"}`` objects
    (a list of two strings is two texts, not a pair). -> the pipeline's inputs."""

    def convert(self, value):
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items:
            self.fail("a text or a non-empty list of texts or pairs", value)
        out = []
        for i, item in enumerate(items):
            if isinstance(item, list) and len(item) == 2 and all(isinstance(x, str) for x in item):
                item = {"text": item[0], "text_pair": item[1]}
            if isinstance(item, dict) and set(item) == {"text", "text_pair"} and \
                    all(isinstance(x, str) for x in item.values()):
                out.append(item)
            elif isinstance(item, str):
                out.append(item)
            else:
                raise InputError(f"{self.name}[{i}] must be a text, a [text, text_pair] list or a "
                                 f'{{"text", "text_pair"}} object, got {_json_type(item)}')
        return out

    def schema(self) -> dict:
        pair = {"anyOf": [{"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 2},
                          {"type": "object", "required": ["text", "text_pair"], "additionalProperties": False,
                           "properties": {"text": {"type": "string"}, "text_pair": {"type": "string"}}}]}
        return {"anyOf": [{"type": "string"},
                          {"type": "array", "minItems": 1, "items": {"anyOf": [{"type": "string"}, pair]}}]}


def _json_type(value) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


MODEL = Text("model", None, "a loaded model's name; absent: the first loaded model that serves this route",
             nullable=True)
TRUNCATE = Bool("truncate", True, "cut texts longer than the model's maximum instead of refusing them")

EMBEDDINGS = Body("/v1/embeddings", (
    Inputs("input", None, "a text or a list of texts (token-id arrays are not supported)"),
    MODEL,
    Choice("encoding_format", "float", "float: lists of numbers; base64: little-endian float32 bytes",
           choices=("float", "base64")),
    Int("dimensions", None, "output dimensions: only the model's own size is supported", nullable=True, low=1),
    Text("user", None, "an end-user id (accepted, not used)", nullable=True),
), required=("input",))

EMBED = Body("/embed", (
    Inputs("inputs", None, "a text or a list of texts"),
    Bool("normalize", True, "unit length vectors (a model whose pooling normalizes is always unit length)"),
    TRUNCATE,
    MODEL,
), required=("inputs",))

RERANK = Body("/rerank", (
    Text("query", None, "the query every text is scored against"),
    Inputs("texts", None, "the texts to rank"),
    Bool("return_text", False, "include each text in its result"),
    Bool("raw_scores", False, "the cross-encoder's logit instead of its sigmoid"),
    TRUNCATE,
    MODEL,
), required=("query", "texts"))

PREDICT = Body("/predict", (
    ClassifierInputs("inputs", None, "a text, a list of texts, or [text, text_pair] pairs"),
    Settings("parameters", None, "text-classification options (edgebert.pipeline's call options)",
             nullable=True, keys=pipeline_class("text-classification").options),
    Bool("raw_scores", False, "logits instead of probabilities (function_to_apply 'none')"),
    TRUNCATE,
    MODEL,
), required=("inputs",))

TOKENIZE = Body("/tokenize", (
    Inputs("inputs", None, "a text or a list of texts"),
    Bool("add_special_tokens", True, "add [CLS] and [SEP] as the model does"),
    MODEL,
), required=("inputs",))

BODIES = {body.route: body for body in (EMBEDDINGS, EMBED, RERANK, PREDICT, TOKENIZE)}
