"""The OpenAPI document, built from the request bodies' declared options (``schemas.py``)."""
from __future__ import annotations

from .. import __version__
from .schemas import BODIES

SUMMARIES = {
    "/v1/embeddings": "OpenAI-compatible embeddings",
    "/embed": "embeddings (text-embeddings-inference)",
    "/rerank": "cross-encoder scores of a query against texts, best first",
    "/predict": "sequence classification of texts or text pairs",
    "/tokenize": "tokens with their character offsets",
}
GETS = {
    "/v1/models": "the loaded models (OpenAI-compatible)",
    "/info": "a model's description and the server's limits (?model=NAME)",
    "/health": "200 once every model is loaded and its kernels compiled, 503 before (no API key needed)",
    "/metrics": "Prometheus metrics",
    "/openapi.json": "this document",
}
ERRORS = {"401": "missing or wrong API key", "404": "unknown model", "408": "the body arrived too slowly",
          "413": "over a size limit (body, texts or tokens per request)", "422": "malformed JSON or a wrong field",
          "429": "the model's queue is full (Retry-After)", "503": "loading, timed out or shutting down"}


def openapi() -> dict:
    errors = {code: {"description": text} for code, text in ERRORS.items()}
    paths = {route: {"post": {"summary": SUMMARIES[route],
                              "requestBody": {"required": True,
                                              "content": {"application/json": {"schema": body.json_schema()}}},
                              "responses": {"200": {"description": "OK"}, **errors}}}
             for route, body in BODIES.items()}
    paths.update({route: {"get": {"summary": text, "responses": {"200": {"description": "OK"}}}}
                  for route, text in GETS.items()})
    return {"openapi": "3.1.0", "info": {"title": "edgebert serve", "version": __version__}, "paths": paths,
            "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}}}
